"""Multi-hop questions generated from the corpus, with verified answers, and the expert that answers them.

Every question bridges two documents: a sentence quoted from a module's documentation identifies the
module (hop 1: search for the sentence, open the module's document), and a fact from one of that
module's API documents is the answer (hop 2: search again, open the function's document, find the
line). The function name alone is often shared by several modules (``dump``, ``open``, ``copy``), so
the first hop matters. Three families:

* ``default``: the default value of parameter ``p`` of the module's function ``f`` (read from the
  signature line, found with ``find("p=")``);
* ``arity``: how many parameters the signature of the module's function ``f`` lists;
* ``which``: which function of the module is documented with a quoted sentence (answer ``module.f``,
  alias ``f``).

:func:`verify_question` checks each answer against the documents it was built from (the quoted
sentence occurs in the module's document and in no other document; the signature line states the
default or has that many parameters; the sentence occurs in that function's document and in no other
API document of the module); the generator keeps only questions that pass, and the tests re-check every
bundled record against the live corpus.

The expert answers each question in one of several equivalent ways, chosen by a seeded generator:
the quoted sentence verbatim or as its content words (in order or reversed: BM25 sees the same bag of
words), ``k`` left at its default or written out, the module document opened or only seen in the
results, ``module:json#0`` or ``module:json`` (the same document), a ``find`` to confirm or not, and
the final message as ``Answer: X`` or just ``X``. Each path is executed in a real world, so the tool
outputs in the records are the tools' own::

    python -m pivot_envs.domains.search.expert --out pivot_envs/domains/search/data/search.jsonl
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pivot_envs.domains.search.corpus import Corpus, load_corpus
from pivot_envs.domains.search.tools import DEFAULT_K, FUNCTIONS, TOOLS
from pivot_envs.trajectory import save_trajectories
from sandboxes.inprocess import InProcessSandbox
from verifiers.search import FILLER, answer_tokens

SYSTEM = ("You answer questions about the Python documentation with tools: search(query, k) ranks documents, "
          "open(doc_id) shows one, find(pattern) lists the lines of the open document that contain a text. "
          "Finish with one message 'Answer: <answer>' that gives exactly one answer.")
FAMILIES = ("default", "arity", "which")
_SIMPLE_DEFAULT = re.compile(r"^(None|True|False|-?\d+(\.\d+)?|'[\w.\-]{1,20}')$")
_SENTENCE_OK = re.compile(r"^[A-Za-z][A-Za-z0-9 ,'()\-]*[a-z0-9)]$")
_STOP = frozenset("a an and are as at be by can for from has have if in into is it its of on or that the this "
                  "to was will with which when what not no may be been also any all".split())


@dataclass
class Question:
    """One generated question and what it was built from."""

    family: str
    text: str
    answer: str
    aliases: list[str]
    module: str
    module_doc: str
    phrase: str
    function: str  # dotted, "json.dumps"
    api_doc: str
    find: str  # the pattern that shows the answer's line in the API document
    evidence: list[str] = field(default_factory=list)
    quote: str = ""  # ``which``: the sentence quoted from the function's document


def _sentences(text: str) -> list[str]:
    flat = " ".join(text.split())
    return [s.strip().rstrip(".") for s in re.split(r"(?<=[.!?])\s+", flat)]


def _good_sentence(s: str, banned: str, lo: int = 7, hi: int = 16) -> bool:
    words = s.split()
    return lo <= len(words) <= hi and bool(_SENTENCE_OK.match(s)) and banned.lower() not in s.lower()


def _occurrences(corpus: Corpus, phrase: str, ids: list[str] | None = None) -> list[str]:
    needle = " ".join(phrase.split()).casefold()
    return [i for i in (ids if ids is not None else corpus.ids)
            if needle in " ".join(corpus.docs[i].text.split()).casefold()]


def _signature_line(corpus: Corpus, api_doc: str) -> str:
    return corpus.docs[api_doc].text.splitlines()[0]


def _parameters(sig_line: str, dotted: str) -> ast.arguments | None:
    if not sig_line.startswith(dotted + "("):
        return None
    try:
        fn = ast.parse(f"def _f{sig_line[len(dotted):]}: pass").body[0]
    except SyntaxError:
        return None
    return fn.args if isinstance(fn, ast.FunctionDef) else None


def _count(args: ast.arguments) -> int:
    return (len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) + (args.vararg is not None)
            + (args.kwarg is not None))


def _defaults(args: ast.arguments) -> dict[str, str]:
    out = {}
    positional = [*args.posonlyargs, *args.args]
    for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults, strict=True):
        out[arg.arg] = ast.unparse(default)
    for arg, default in zip(args.kwonlyargs, args.kw_defaults, strict=True):
        if default is not None:
            out[arg.arg] = ast.unparse(default)
    return out


def verify_question(corpus: Corpus, q: Question) -> list[str]:
    """Problems with ``q`` against the corpus (empty when its answer holds in the documents it cites)."""
    problems = []
    if q.module_doc not in corpus.docs or q.api_doc not in corpus.docs:
        return [f"cited documents missing: {q.module_doc}, {q.api_doc}"]
    where = _occurrences(corpus, q.phrase)
    if where != [q.module_doc]:
        problems.append(f"the quoted sentence occurs in {where}, not only in {q.module_doc}")
    if corpus.docs[q.api_doc].name != q.function or not q.function.startswith(q.module + "."):
        problems.append(f"{q.api_doc} is not the document of {q.function} in module {q.module}")
    args = _parameters(_signature_line(corpus, q.api_doc), q.function)
    if q.family == "default":
        param = q.find.removesuffix("=")
        if args is None or _defaults(args).get(param) != q.answer:
            problems.append(f"the signature of {q.function} does not give {param}={q.answer}")
        if not any(q.find.casefold() in line.casefold() for line in corpus.docs[q.api_doc].text.splitlines()):
            problems.append(f"find({q.find!r}) shows no line of {q.api_doc}")
    elif q.family == "arity":
        if args is None or str(_count(args)) != q.answer:
            problems.append(f"the signature of {q.function} does not list {q.answer} parameters")
    elif q.family == "which":
        module_apis = [i for i in corpus.ids if i.startswith(f"api:{q.module}.")]
        hits = {corpus.docs[i].name for i in _occurrences(corpus, q.quote, module_apis)}
        if hits != {q.function} or q.answer != q.function:
            problems.append(f"the sentence is in the documents of {sorted(hits)}, not only {q.function}")
        if not _line_with(corpus.docs[q.api_doc].text, q.find) or q.find.casefold() not in q.quote.casefold():
            problems.append(f"find({q.find!r}) shows no line of {q.api_doc} or is not part of the quote")
    else:
        problems.append(f"unknown family {q.family!r}")
    if not answer_tokens(q.answer) or set(answer_tokens(q.answer)) & FILLER:
        problems.append(f"answer {q.answer!r} is empty or made of filler words after normalisation")
    return problems


def _line_with(text: str, pattern: str) -> bool:
    return any(pattern.casefold() in line.casefold() for line in text.splitlines())


def _line_fragment(text: str, quote: str, min_words: int = 4) -> str | None:
    """The longest run of the quote's words that one line of ``text`` holds (find works line by line)."""
    words = quote.split()
    for n in range(len(words), min_words - 1, -1):
        for i in range(len(words) - n + 1):
            frag = " ".join(words[i:i + n])
            if _line_with(text, frag):
                return frag
    return None


def _module_phrases(corpus: Corpus, module: str) -> list[tuple[str, str]]:
    out = []
    for doc_id in [i for i in corpus.ids if i.startswith(f"module:{module}#")]:
        for s in _sentences(corpus.docs[doc_id].text):
            short = module.rsplit(".", 1)[-1]
            if _good_sentence(s, short) and _occurrences(corpus, s) == [doc_id]:
                out.append((doc_id, s))
    return out


def generate_questions(corpus: Corpus, seed: int = 0, per_family: int = 55) -> list[Question]:
    """Deterministic questions of every family, each verified by :func:`verify_question`."""
    rng = random.Random(seed)
    modules = sorted({d.name for d in corpus.docs.values() if d.kind == "module"})
    phrases = {m: _module_phrases(corpus, m) for m in modules}
    # How many modules have a function of each short name: shared names make the first hop necessary.
    short_names: dict[str, int] = {}
    for d in corpus.docs.values():
        if d.kind == "api" and d.chunk == 0:
            short_names[d.name.rsplit(".", 1)[-1]] = short_names.get(d.name.rsplit(".", 1)[-1], 0) + 1
    candidates: dict[str, list[Question]] = {f: [] for f in FAMILIES}
    for m in modules:
        if not phrases[m]:
            continue
        apis = [d for d in corpus.docs.values()
                if d.kind == "api" and d.chunk == 0 and d.name.startswith(m + ".") and d.title.endswith("(function)")
                and "." not in d.name[len(m) + 1:]]
        for d in apis:
            module_doc, phrase = rng.choice(phrases[m])
            f = d.name.rsplit(".", 1)[-1]
            args = _parameters(_signature_line(corpus, d.doc_id), d.name)
            base = dict(module=m, module_doc=module_doc, phrase=phrase, function=d.name, api_doc=d.doc_id)
            intro = f'A standard-library module\'s documentation says: "{phrase}."'
            if args is not None:
                simple = {p: v for p, v in _defaults(args).items() if _SIMPLE_DEFAULT.match(v)}
                if simple:
                    p = rng.choice(sorted(simple))
                    candidates["default"].append(Question(
                        "default", f"{intro} What is the default value of the `{p}` parameter of that module's "
                        f"function `{f}`?", simple[p], [], find=f"{p}=", **base))
                if _count(args) >= 1:
                    candidates["arity"].append(Question(
                        "arity", f"{intro} How many parameters does the signature of that module's function "
                        f"`{f}` list?", str(_count(args)), [], find=f"{f}(", **base))
            body = "\n".join(corpus.docs[d.doc_id].text.splitlines()[1:])
            quotes = [s for s in _sentences(body) if _good_sentence(s, f, 6, 14)]
            if quotes:
                quote = rng.choice(quotes)
                frag = _line_fragment(corpus.docs[d.doc_id].text, quote)
                if frag is not None:
                    candidates["which"].append(Question(
                        "which", f'{intro} Which function of that module is documented with the words "{quote}"? '
                        "Give its dotted name.", d.name, [f], find=frag, quote=quote, **base))
    out = []
    for family in FAMILIES:
        pool = [q for q in candidates[family] if not verify_question(corpus, q)]
        # Prefer functions whose short name several modules share, then a seeded order.
        rng.shuffle(pool)
        pool.sort(key=lambda q: -min(short_names.get(q.function.rsplit(".", 1)[-1], 1), 3))
        chosen, per_module = [], {}
        for q in pool:
            if per_module.get(q.module, 0) >= 4:
                continue  # spread the questions over modules
            per_module[q.module] = per_module.get(q.module, 0) + 1
            q.evidence = [q.module_doc, q.api_doc]
            chosen.append(q)
            if len(chosen) == per_family:
                break
        out += chosen
    return out


# -- the expert ---------------------------------------------------------------------------------------

def _content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z0-9_]+", text) if w.lower() not in _STOP and len(w) > 1]


def first_hop_queries(q: Question) -> list[str]:
    """Equivalent first-hop queries: the sentence, its content words, those words reversed."""
    words = _content_words(q.phrase)
    return [q.phrase, " ".join(words), " ".join(reversed(words))]


def second_hop_queries(q: Question) -> list[str]:
    """Equivalent second-hop queries for the function's document."""
    module, f = q.module, q.function.rsplit(".", 1)[-1]
    if q.family == "which":
        words = _content_words(q.quote)
        return [f"{module} {' '.join(words)}", f"{q.quote} {module}"]
    return [q.function, f"{module} {f}", f"{f} {module} function"]


class _Recorder:
    """Runs the expert's calls in a real world and records the messages."""

    def __init__(self, q: Question, rng: random.Random):
        self.q, self.rng = q, rng
        self.world = InProcessSandbox({"opened": None, "visited": []}, tools=FUNCTIONS)
        self.messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM},
                                               {"role": "user", "content": q.text}]

    def call(self, name: str, arguments: dict[str, Any], why: str) -> Any:
        digest = hashlib.sha256(json.dumps([self.q.text, len(self.messages), name, arguments]).encode()).hexdigest()
        call_id = f"call_{digest[:8]}"
        result = self.world.call_tool(name, arguments)
        if result.exit_code != 0:
            raise RuntimeError(f"expert call {name}({arguments}) failed: {result.stderr}")
        self.messages.append({"role": "assistant", "content": None, "reasoning_content": why, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}]})
        self.messages.append({"role": "tool", "tool_call_id": call_id, "content": result.stdout})
        return json.loads(result.stdout)

    def search_until(self, queries: list[str], target: str, why: str) -> bool:
        """Search with the first query (in a seeded order) whose results hold ``target``; False if none do."""
        order = queries[:]
        self.rng.shuffle(order)
        corpus = load_corpus()
        for query in order:
            k = self.rng.choice([None, None, 3, DEFAULT_K, 8])
            if target in corpus.search(query, k or DEFAULT_K):
                self.call("search", {"query": query} if k is None else {"query": query, "k": k}, why)
                return True
        return False


def demonstrate(q: Question, rng: random.Random) -> list[dict[str, Any]] | None:
    """The expert's messages for ``q`` (None when no query of a hop retrieves its document)."""
    r = _Recorder(q, rng)
    short = q.function.rsplit(".", 1)[-1]
    if not r.search_until(first_hop_queries(q), q.module_doc, "Find the module whose documentation has this sentence."):
        return None
    if rng.random() < 0.6:
        r.call("open", {"doc_id": q.module_doc}, f"{q.module_doc} looks like the source; read it.")
        if rng.random() < 0.4:
            r.call("find", {"pattern": max(_content_words(q.phrase), key=len)}, "Confirm the quoted sentence is here.")
    if not r.search_until(second_hop_queries(q), q.api_doc, f"The module is {q.module}; now look up `{short}`."):
        return None
    target = q.api_doc if rng.random() < 0.7 else q.api_doc.removesuffix("#0")
    r.call("open", {"doc_id": target}, f"Open the documentation of {q.function}.")
    if q.family != "arity" or rng.random() < 0.5:
        r.call("find", {"pattern": q.find}, "Find the line that answers the question.")
    answer = q.answer if rng.random() < 0.5 or q.family != "which" else short
    final = f"Answer: {answer}" if rng.random() < 0.75 else answer
    r.messages.append({"role": "assistant", "content": final,
                       "reasoning_content": f"The documents of {q.module} and {q.function} give the answer."})
    r.world.close()
    return r.messages


def generate(seed: int = 0, per_family: int = 55) -> list[dict[str, Any]]:
    """The bundled records: questions of every family, each demonstrated by the expert."""
    corpus = load_corpus()
    rng = random.Random(seed)
    records = []
    for q in generate_questions(corpus, seed, per_family):
        messages = demonstrate(q, rng)
        if messages is None:
            continue
        records.append({
            "id": f"search-{len(records):06d}", "domain": "search", "tools": TOOLS,
            "env": {"sandbox": "inprocess", "state": {"opened": None, "visited": []}, "corpus": corpus.version},
            "messages": messages,
            "task": {"answer": q.answer, "aliases": q.aliases, "family": q.family, "evidence": q.evidence,
                     "phrase": q.phrase, "function": q.function, "find": q.find, "quote": q.quote,
                     "success": {"kind": "answer"}},
            "metadata": {"source": "generated", "seed": seed, "family": q.family},
        })
    return records


def generate_file(path: str | Path, n: int | None = None, seed: int = 0) -> int:
    """Write :func:`generate` as JSONL, atomically (the shape ``pivotrl data generate`` calls).

    ``n`` caps the number of records, taken round-robin over the question families so that every family
    stays represented; None keeps them all (seed 0 gives the bundled 143).
    """
    per_family = 55 if n is None else max(1, -(-n // 3))
    records = generate(seed, per_family)
    if n is not None:
        by_family: dict[str, list[dict[str, Any]]] = {}
        for rec in records:
            by_family.setdefault(rec["task"]["family"], []).append(rec)
        queues, records = list(by_family.values()), []
        while len(records) < n and any(queues):
            for queue in queues:
                if queue and len(records) < n:
                    records.append(queue.pop(0))
    return save_trajectories(records, path)


def question_of_record(record: dict[str, Any]) -> Question:
    """The :class:`Question` a bundled record was built from (for re-verification)."""
    task = record["task"]
    module_doc, api_doc = task["evidence"]
    module = module_doc.split(":", 1)[1].split("#", 1)[0]
    return Question(task["family"], record["messages"][1]["content"], task["answer"], list(task["aliases"]), module,
                    module_doc, task["phrase"], task["function"], api_doc, task["find"], list(task["evidence"]),
                    task.get("quote", ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the search domain's records from this interpreter's docs.")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-family", type=int, default=55)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = save_trajectories(generate(args.seed, args.per_family), args.out)
    print(f"wrote {count} records to {args.out}")


if __name__ == "__main__":
    main()
