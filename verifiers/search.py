"""The search cascade (``make_verifier("search")``) for browsing agents: queries judged by what they find.

Tool vocabulary (aliases in the ``*_TOOLS`` tuples): ``search`` ``{"query", "k"?}``, ``open``
``{"doc_id"}`` or ``{"url"}``, ``find`` / ``find_in_page`` ``{"pattern"}`` and ``answer`` ``{"answer"}``;
a final answer may also be a message to the user (``message_mode="answer"``, the default). One call per
turn.

Stages, first decisive wins:

1. **form**: malformed or empty turns, ``WRONG_KIND``, one call per turn (``CALL_COUNT``), same tool
   category (``WRONG_TOOL``), and the reward-hacking guards on searches: an empty query, a query longer
   than ``max_query_words`` words, or a ``k`` outside 1..``max_k`` (asking for the whole corpus) is
   ``ARG_VALUE``, decided, whatever a later stage would say.
2. **exact**: canonical queries (:func:`canonical_query`: lower case, punctuation dropped, whitespace
   collapsed, stop words dropped when configured) with the same ``k``, canonical targets
   (:func:`canonical_target`: a document id as written, or a URL without scheme, ``www.``, fragment,
   tracking parameters, query order and trailing slash), the same find pattern, the same answer.
3. **decide by category**:
   * search: both queries run against the domain's own index (never the live web): the ``index(query, k)
     -> [doc_id]`` callable given to the constructor (:func:`bm25_index` builds one with ``bm25s``), or
     else the context's sandbox and executor (the domain's search tool in twin forks, its results
     parsed as ids). The two ranked lists must have the same first result (``same_top``) and a
     rank-biased overlap (:func:`rank_overlap`, persistence ``p``, depth ``k``), which weighs agreement
     at the top most, of at least ``threshold``; else ``RESULTS_DIFFER``. Without an index or sandbox: query token Dice >=
     ``query_threshold`` (0.6; NeMo's ``search_pivot`` 0.3 on its half-scale overlap), a tentative
     verdict a judge may overrule.
   * open: with a sandbox, both opens run in twin forks: the same resulting world (the same document
     open) and both succeeding accepts (``module:json`` and ``module:json#0`` are one document there),
     else ``TARGET_DIFFERS`` / ``EXIT_DIFFERS``. Without one, different canonical targets are
     ``TARGET_DIFFERS``.
   * find: with a sandbox, both patterns run in the open document; the sets of matched lines must have
     Jaccard >= ``find_threshold`` (two patterns finding the same lines are the same step), else
     ``OUTPUT_DIFFERS``. Without one, a tentative ``ARG_VALUE``.
   * answers (``answer`` tool or final message): :func:`compare_answers`: the answer is taken after a
     last ``Answer:`` label, normalised (case, punctuation, articles, filler words such as "module" or
     "the answer is", number words), then exact match with the demonstration's answer or one of the
     record's ``task.aliases``, else token F1 >= ``answer_threshold``. An answer that names more
     candidates than the demonstration ("A or B or C", "A, B, C") is ``EXTRA_FACTS`` and one that copies
     the question is ``MESSAGE_DIFFERS``, both decided (a judge never rescues them).
4. **judge** (optional): only what the rules left tentative.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pivot_envs.actions import Action, ToolCall
from verifiers.cascade import Cascade, ExactStage, Memo, Stage, Step, WellFormedStage, decide, tentative
from verifiers.core import Category, Verdict, VerifierError, VerifyContext
from verifiers.execution import CallEffect, executor_of, run_in_fork
from verifiers.judge import JudgeBackend, JudgeStage, LLMJudge
from verifiers.messages import MessageRules
from verifiers.toolcall import dice, tokens

SEARCH_TOOLS = ("search", "web_search", "search_web", "google_search", "bing_search", "search_query")
OPEN_TOOLS = ("open", "open_url", "browse", "fetch", "visit", "open_page", "get_page", "read_url", "open_document")
FIND_TOOLS = ("find", "find_in_page", "find_on_page")
ANSWER_TOOLS = ("answer", "final_answer", "submit", "submit_answer")
STOPWORDS = frozenset("a an and are as at be by for from how in is it of on or the to was what when where which who "
                      "why with".split())
_TRACKING = re.compile(r"^(utm_.*|fbclid|gclid|mc_cid|mc_eid|ref|ref_src|igshid)$")
_DOC_ID = re.compile(r"^[A-Za-z][\w-]*:(?!//)\S+$")  # ``module:json#0``: a document id, not a URL
QUERY_KEYS = ("query", "q", "search_query")
TARGET_KEYS = ("doc_id", "url", "link", "id")

#: ``index(query, k) -> ranked doc ids``.
SearchIndex = Callable[[str, int], Sequence[str]]


def canonical_query(query: Any, *, drop_stopwords: bool = False) -> str:
    """Lower case, punctuation dropped, whitespace collapsed (and stop words dropped when asked).

    >>> canonical_query("  Who wrote *Dune*? ")
    'who wrote dune'
    """
    if not isinstance(query, str):
        return ""
    words = tokens(query)
    if drop_stopwords:
        words = [w for w in words if w not in STOPWORDS] or words
    return " ".join(words)


def canonical_url(url: Any) -> str:
    """A URL with the differences that do not change the page removed.

    >>> canonical_url("HTTPS://www.Example.com/a/?utm_source=x&b=2&a=1#top")
    'http://example.com/a?a=1&b=2'
    """
    if not isinstance(url, str):
        return ""
    raw = url.strip()
    if "://" not in raw:
        raw = "http://" + raw
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:  # "host:notaport" and other unsplittable text: compare it as written
        return url.strip()
    host = (parts.hostname or "").lower().removeprefix("www.")
    if port and port not in (80, 443):
        host += f":{port}"
    path = parts.path.rstrip("/") or ""
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)))
    return urlunsplit(("http", host, path, query, ""))


def canonical_target(target: Any) -> str:
    """What an ``open`` names: a document id (``module:json#2``, fragment kept: it is the chunk) as written,
    else a canonical URL.

    >>> canonical_target(" module:json#2 "), canonical_target("https://www.python.org/")
    ('module:json#2', 'http://python.org')
    """
    if isinstance(target, str) and _DOC_ID.match(target.strip()):
        return target.strip()
    return canonical_url(target)


def bm25_index(docs: Mapping[str, str]) -> SearchIndex:
    """A BM25 index over ``{doc_id: text}`` built with ``bm25s`` (pip install bm25s)."""
    try:
        import bm25s  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise VerifierError("bm25_index needs the 'bm25s' package (pip install bm25s); or pass any "
                            "index(query, k) -> [doc_id] callable to SearchCascade(index=...)") from exc
    ids = list(docs)
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([docs[i] for i in ids], stopwords="en", show_progress=False), show_progress=False)

    def search(query: str, k: int) -> list[str]:
        k = min(k, len(ids))
        terms = bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]
        if k <= 0 or not terms:
            return []
        scores = retriever.get_scores(terms)
        ranked = sorted((i for i in range(len(ids)) if scores[i] > 0), key=lambda i: (-float(scores[i]), i))
        return [ids[i] for i in ranked[:k]]

    return search


def rank_overlap(a: Sequence[str], b: Sequence[str], *, p: float = 0.8, depth: int = 10) -> float:
    """Rank-biased overlap of two ranked lists, truncated at ``depth`` and normalised to [0, 1].

    ``sum_d p^(d-1) * |a[:d] & b[:d]| / d`` over d = 1..D, divided by ``sum_d p^(d-1)``, where D is the
    longer list's length (at most ``depth``): 1 for identical lists, 0 for disjoint ones, and a swap at
    the top costs more than one at the bottom (Webber et al. 2010, without extrapolation). Two empty
    lists overlap fully.

    >>> rank_overlap(["a", "b", "c"], ["a", "b", "c"]), rank_overlap(["a", "b"], ["c", "d"])
    (1.0, 0.0)
    >>> round(rank_overlap(["a", "b", "c"], ["b", "a", "c"]), 3)
    0.59
    """
    a, b = list(a)[:depth], list(b)[:depth]
    n = max(len(a), len(b))
    if n == 0:
        return 1.0
    total = weight = 0.0
    for d in range(1, n + 1):
        w = p ** (d - 1)
        total += w * len(set(a[:d]) & set(b[:d])) / d
        weight += w
    return total / weight


# -- answers -------------------------------------------------------------------------------------------

_ANSWER_LABEL = re.compile(r"(?:exact\s+|final\s+)?answer\s*(?:is)?\s*[:=]", re.IGNORECASE)
_ANSWER_TOKEN = re.compile(r"-?\d+(?:\.\d+)?|[^\W\d_][\w]*|_\w*", re.UNICODE)
_HEDGE_SPLIT = re.compile(r"\s+(?:or|and/or|either|maybe|perhaps)\s+|\s*[,;|/\n]\s*|\s+vs\.?\s+", re.IGNORECASE)
#: Words that carry no answer in this domain's answers ("the json module", "it defaults to None",
#: "the answer is 3"). Gold answers never consist of them (the generator checks).
FILLER = frozenset("""a an the answer answers is it its it's this that module modules function functions method
methods class classes parameter parameters argument arguments default defaults default_value value values
to of called named python final exact there are has have takes take listed lists signature in""".split())
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def extract_answer(text: str) -> str:
    """The answer part of a final message: after the last ``Answer:`` label, else the whole text."""
    labels = list(_ANSWER_LABEL.finditer(text))
    return text[labels[-1].end():].strip() if labels else text.strip()


def answer_tokens(text: str) -> list[str]:
    """Normalised answer tokens: lower case, punctuation and filler words dropped, number words as digits.

    >>> answer_tokens("The answer is: `None`."), answer_tokens("json.dumps"), answer_tokens("Three")
    (['none'], ['json', 'dumps'], ['3'])
    """
    words = [_NUMBER_WORDS.get(w, w) for w in _ANSWER_TOKEN.findall(text.casefold())]
    kept = [w for w in words if w not in FILLER]
    return kept or words


def answer_f1(gold: str, candidate: str) -> float:
    """SQuAD-style token F1 of two answers after :func:`answer_tokens`."""
    g, c = answer_tokens(gold), answer_tokens(candidate)
    if not g or not c:
        return float(g == c)
    common: dict[str, int] = {}
    for t in c:
        common[t] = common.get(t, 0) + 1
    same = 0
    for t in g:
        if common.get(t, 0) > 0:
            common[t] -= 1
            same += 1
    if same == 0:
        return 0.0
    precision, recall = same / len(c), same / len(g)
    return 2 * precision * recall / (precision + recall)


def _candidate_count(answer: str) -> int:
    return sum(1 for part in _HEDGE_SPLIT.split(answer) if answer_tokens(part))


def compare_answers(gold: str | Sequence[str], candidate: str, *, question: str | None = None,
                    threshold: float = 0.8) -> tuple[Verdict, bool]:
    """Judge a final answer against the verified answer(s); returns ``(verdict, certain)``.

    ``gold``: the demonstration's answer text, or several accepted forms (the first is the answer, the
    rest aliases). ``certain`` is False only for a plain F1 miss, which a judge may still overrule;
    hedged answers and copies of the question are certain rejections.
    """
    golds = [gold] if isinstance(gold, str) else list(gold)
    golds = [extract_answer(g) for g in golds if isinstance(g, str) and g.strip()]
    answer = extract_answer(candidate) if isinstance(candidate, str) else ""
    if not answer_tokens(answer):
        return Verdict.reject("rule", Category.EMPTY, reason="no answer in the message"), True
    # A policy could list every candidate it saw and collect the reward from whichever is right.
    allowed = max((_candidate_count(g) for g in golds), default=1)
    if _candidate_count(answer) > allowed:
        return Verdict.reject("rule", Category.EXTRA_FACTS, reason="names several candidate answers",
                              candidates=_candidate_count(answer), allowed=allowed), True
    if question:
        q, a = set(answer_tokens(question)), answer_tokens(answer)
        copied = sum(t in q for t in a) / len(a)
        longest = max(len(answer_tokens(g)) for g in golds) if golds else 1
        if len(a) > max(3, 2 * longest) and copied >= 0.6:
            return Verdict.reject("rule", Category.MESSAGE_DIFFERS, reason="answer copies the question",
                                  copied=round(copied, 3)), True
    norm = answer_tokens(answer)
    for i, g in enumerate(golds):
        if answer_tokens(g) == norm:
            return Verdict.accept("rule", answer="exact" if i == 0 else "alias"), True
    f1 = max((answer_f1(g, answer) for g in golds), default=0.0)
    if f1 >= threshold:
        return Verdict.accept("rule", answer_f1=round(f1, 4)), True
    return Verdict.reject("rule", Category.MESSAGE_DIFFERS, answer_f1=round(f1, 4), threshold=threshold), False


def task_answers(ctx: VerifyContext, expected_answer: str) -> list[str]:
    """The demonstration's answer, plus the record's ``task.answer`` and ``task.aliases`` when the
    demonstration gives one of them."""
    task = (ctx.trajectory.task if ctx.trajectory is not None else None) or {}
    out = [expected_answer]
    gold = task.get("answer")
    if not isinstance(gold, str):
        return out
    forms = [gold, *(a for a in task.get("aliases") or () if isinstance(a, str))]
    # The demonstration may give the answer in any accepted form (``copy`` for ``shutil.copy``).
    if answer_tokens(extract_answer(expected_answer)) in [answer_tokens(f) for f in forms]:
        out += forms
    return out


def question_of(ctx: VerifyContext) -> str | None:
    """The first user message of the record (the question a copied answer would repeat)."""
    if ctx.trajectory is None:
        return None
    for m in ctx.trajectory.messages:
        if m.get("role") == "user" and isinstance(m.get("content"), str):
            return m["content"]
    return None


# -- the cascade -----------------------------------------------------------------------------------------

def category_of(call: ToolCall) -> str:
    name = call.name.strip().lower().removeprefix("functions.")
    for category, names in (("search", SEARCH_TOOLS), ("open", OPEN_TOOLS), ("find", FIND_TOOLS),
                            ("answer", ANSWER_TOOLS)):
        if name in names:
            return category
    return "unknown"


def _arg(call: ToolCall, *keys: str) -> Any:
    args = call.arguments or {}
    return next((args[k] for k in keys if k in args), None)


def _key(action: Action, drop_stopwords: bool) -> Any:
    if not action.tool_calls:
        return ("answer", tuple(answer_tokens(extract_answer(action.content))))
    out = []
    for call in action.tool_calls:
        category = category_of(call)
        if category == "search":
            out.append((category, canonical_query(_arg(call, *QUERY_KEYS), drop_stopwords=drop_stopwords),
                        repr(_arg(call, "k"))))
        elif category == "open":
            out.append((category, canonical_target(_arg(call, *TARGET_KEYS))))
        elif category == "find":
            out.append((category, " ".join(str(_arg(call, "pattern", "text") or "").split()).casefold()))
        elif category == "answer":
            out.append((category, tuple(answer_tokens(extract_answer(str(_arg(call, "answer", "text") or ""))))))
        else:
            out.append((call.name, json.dumps(call.arguments, sort_keys=True)))
    return ("calls", tuple(out))


def parse_result_ids(output: str) -> list[str]:
    """Doc ids from a search tool's output: a JSON list of ids or of objects with ``id``/``doc_id``/``url``
    (possibly under ``results``), else one id per line."""
    try:
        data = json.loads(output)
    except (json.JSONDecodeError, ValueError):
        return [line.strip() for line in output.splitlines() if line.strip()]
    if isinstance(data, dict):
        data = data.get("results", [])
    ids = []
    for item in data if isinstance(data, list) else []:
        if isinstance(item, dict):
            value = next((item[k] for k in ("doc_id", "id", "docid", "url") if k in item), None)
            if value is not None:
                ids.append(canonical_target(value) if isinstance(value, str) and "/" in value else str(value))
        elif isinstance(item, (str, int)):
            ids.append(str(item))
    return ids


def _matched_lines(output: str) -> set[Any] | None:
    """Line numbers from a find tool's ``{"matches": [{"line": n}, ...]}`` output (None: another shape)."""
    try:
        data = json.loads(output)
    except (json.JSONDecodeError, ValueError):
        return None
    matches = data.get("matches") if isinstance(data, dict) else None
    if not isinstance(matches, list):
        return None
    return {m.get("line", json.dumps(m, sort_keys=True)) if isinstance(m, dict) else str(m) for m in matches}


class SearchShapeStage(Stage):
    """Kinds, call count, tool category, the degenerate-search guards, and final answers as messages."""

    name = "rules"

    def __init__(self, messages: MessageRules | None, *, messages_final: bool, answer_threshold: float,
                 max_k: int, max_query_words: int):
        self.messages, self.messages_final = messages, messages_final
        self.answer_threshold, self.max_k, self.max_query_words = answer_threshold, max_k, max_query_words

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        if expected.kind == "message":
            if self.messages is not None:
                verdict = self.messages.compare(expected.content, candidate.content, ctx)
                return decide(verdict) if self.messages_final else tentative(verdict)
            verdict, certain = compare_answers(task_answers(ctx, expected.content), candidate.content,
                                               question=question_of(ctx), threshold=self.answer_threshold)
            return decide(verdict) if certain or self.messages_final else tentative(verdict)
        if len(expected.tool_calls) != 1 or len(candidate.tool_calls) != 1:
            return decide(Verdict.reject("rule", Category.CALL_COUNT, expected=len(expected.tool_calls),
                                         got=len(candidate.tool_calls)))
        want, got = expected.tool_calls[0], candidate.tool_calls[0]
        a, b = category_of(want), category_of(got)
        if a != b or (a == "unknown" and want.name != got.name):
            known = ctx.tool_names()
            category = Category.UNKNOWN_TOOL if known and got.name not in known else Category.WRONG_TOOL
            return decide(Verdict.reject("rule", category, expected=want.name, got=got.name))
        if a == "search":
            return self._degenerate_search(got)
        return None

    def _degenerate_search(self, call: ToolCall) -> Step | None:
        query, k = _arg(call, *QUERY_KEYS), _arg(call, "k", "num_results", "top_k")
        if query is None:
            return decide(Verdict.reject("rule", Category.ARG_MISSING, keys=["query"]))
        if not isinstance(query, str):
            return decide(Verdict.reject("rule", Category.ARG_TYPE, key="query", got=type(query).__name__))
        if not tokens(query):
            return decide(Verdict.reject("rule", Category.ARG_VALUE, key="query", reason="empty query"))
        if len(query.split()) > self.max_query_words:
            return decide(Verdict.reject("rule", Category.ARG_VALUE, key="query", reason="query too long",
                                         words=len(query.split()), allowed=self.max_query_words))
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.max_k):
            return decide(Verdict.reject("rule", Category.ARG_VALUE, key="k", reason=f"k must be 1..{self.max_k}",
                                         got=repr(k)[:40]))
        return None


class SearchDecideStage(Stage):
    """Searches by what they retrieve, opens by the document they open, finds by the lines they find."""

    name = "search"

    def __init__(self, index: SearchIndex | None, *, k: int, threshold: float, p: float, query_threshold: float,
                 find_threshold: float, answer_threshold: float, messages_final: bool, same_top: bool = True):
        self.index, self.k, self.threshold, self.p, self.same_top = index, k, threshold, p, same_top
        self.query_threshold, self.find_threshold = query_threshold, find_threshold
        self.answer_threshold, self.messages_final = answer_threshold, messages_final

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        if expected.kind != "tool_call":
            return None
        want, got = expected.tool_calls[0], candidate.tool_calls[0]
        category = category_of(want)
        if category == "answer":
            gold = str(_arg(want, "answer", "text") or "")
            verdict, certain = compare_answers(task_answers(ctx, gold), str(_arg(got, "answer", "text") or ""),
                                               question=question_of(ctx), threshold=self.answer_threshold)
            return decide(verdict) if certain or self.messages_final else tentative(verdict)
        if category == "search":
            return self._search(want, got, ctx, memo)
        if category in ("open", "find") and self.index is None and ctx.sandbox is not None:
            return self._in_forks(category, want, got, ctx, memo)
        if category == "open":
            a, b = canonical_target(_arg(want, *TARGET_KEYS)), canonical_target(_arg(got, *TARGET_KEYS))
            if a == b:
                return decide(Verdict.accept("rule"))
            return decide(Verdict.reject("rule", Category.TARGET_DIFFERS, expected=a, got=b))
        return tentative(Verdict.reject("rule", Category.ARG_VALUE, key="pattern" if category == "find" else None))

    def _search(self, want: ToolCall, got: ToolCall, ctx: VerifyContext, memo: Memo) -> Step:
        results = self._results(want, got, ctx, memo)
        if results is None:
            qa, qb = str(_arg(want, *QUERY_KEYS) or ""), str(_arg(got, *QUERY_KEYS))
            overlap = round(dice(qa, qb), 4)
            if overlap >= self.query_threshold:
                return tentative(Verdict.accept("rule", overlap=overlap))
            return tentative(Verdict.reject("rule", Category.ARG_VALUE, overlap=overlap, threshold=self.query_threshold))
        a, b = results
        if b is None:
            return decide(Verdict.reject("execution", Category.EXIT_DIFFERS, reason="the candidate's search failed"))
        score = round(rank_overlap(a, b, p=self.p, depth=self.k), 4)
        details = {"rank_overlap": score, "k": self.k, "p": self.p, "expected": a[:5], "got": b[:5]}
        if self.same_top and a[:1] != b[:1]:
            # The same documents in another order can still point elsewhere: "plistlib.loads" finds the
            # documents "plistlib.dumps" finds, with loads first.
            return decide(Verdict.reject("execution", Category.RESULTS_DIFFER, reason="another first result",
                                         **details))
        if score >= self.threshold:
            return decide(Verdict.accept("execution", **details))
        return decide(Verdict.reject("execution", Category.RESULTS_DIFFER, threshold=self.threshold, **details))

    def _results(self, want: ToolCall, got: ToolCall, ctx: VerifyContext,
                 memo: Memo) -> tuple[list[str], list[str] | None] | None:
        """The two ranked result lists (the candidate's None when its search failed), or None: no index."""
        if self.index is not None:
            def run(call: ToolCall) -> list[str] | None:
                k = _arg(call, "k", "num_results", "top_k")
                return list(self.index(str(_arg(call, *QUERY_KEYS)), k if isinstance(k, int) else self.k))[: self.k]
        elif ctx.sandbox is not None:
            executor, sandbox = executor_of(ctx), ctx.sandbox

            def run(call: ToolCall) -> list[str] | None:
                effect = run_in_fork(sandbox, [call], executor)
                return parse_result_ids(effect.outputs[0])[: self.k] if effect.results[0].exit_code == 0 else None
        else:
            return None
        if "expected_results" not in memo:
            memo["expected_results"] = run(want) or []
        return memo["expected_results"], run(got)

    def _in_forks(self, category: str, want: ToolCall, got: ToolCall, ctx: VerifyContext, memo: Memo) -> Step:
        executor = executor_of(ctx)
        assert ctx.sandbox is not None
        if "expected_effect" not in memo:
            memo["expected_effect"] = run_in_fork(ctx.sandbox, [want], executor)
        a: CallEffect = memo["expected_effect"]
        b = run_in_fork(ctx.sandbox, [got], executor)
        ok_a, ok_b = a.results[0].exit_code == 0, b.results[0].exit_code == 0
        if ok_a != ok_b:
            return decide(Verdict.reject("execution", Category.EXIT_DIFFERS, expected_ok=ok_a, got_ok=ok_b,
                                         got=b.outputs[0][:200]))
        if category == "open":
            if a.digest == b.digest:
                return decide(Verdict.accept("execution", same="document"))
            return decide(Verdict.reject("execution", Category.TARGET_DIFFERS,
                                         expected=canonical_target(_arg(want, *TARGET_KEYS)),
                                         got=canonical_target(_arg(got, *TARGET_KEYS))))
        lines_a, lines_b = _matched_lines(a.outputs[0]), _matched_lines(b.outputs[0])
        if lines_a is None or lines_b is None:  # not a find tool we can read: compare the outputs whole
            same = " ".join(a.outputs[0].split()) == " ".join(b.outputs[0].split())
            return decide(Verdict.accept("execution") if same else
                          Verdict.reject("execution", Category.OUTPUT_DIFFERS))
        jaccard = 1.0 if not lines_a and not lines_b else len(lines_a & lines_b) / len(lines_a | lines_b)
        details = {"jaccard": round(jaccard, 4), "expected_lines": len(lines_a), "got_lines": len(lines_b)}
        if jaccard >= self.find_threshold:
            return decide(Verdict.accept("execution", **details))
        return decide(Verdict.reject("execution", Category.OUTPUT_DIFFERS, threshold=self.find_threshold, **details))


class SearchCascade(Cascade):
    """The search-domain verifier (see the module docstring).

    Args:
        index: ``index(query, k) -> [doc_id]`` over the domain's local index; None = use the context's
            sandbox and executor, or the query-overlap rule when there is none.
        k: How many top results count (the depth of the rank overlap).
        threshold: Rank-biased overlap of the two result lists needed (0.6: the same top document and most
            of the rest, in about the same order).
        p: Persistence of the rank-biased overlap (lower = the top ranks weigh more).
        same_top: Also require the same first result (a query that ranks another document first is
            after another document, however much the rest overlaps).
        query_threshold: Query token Dice of the no-index rule.
        find_threshold: Jaccard of the lines two find patterns match.
        answer_threshold: Token F1 an answer needs after normalisation.
        max_k: Largest ``k`` a candidate may ask for (more is an attempt to see the whole corpus).
        max_query_words: Longest candidate query, in words (longer is a vocabulary dump).
        drop_stopwords: Ignore stop words in canonical queries.
        message_mode: ``"answer"`` (messages are final answers: :func:`compare_answers`) or a
            :class:`~verifiers.messages.MessageRules` mode (``"facts"``, ``"overlap"``).
        judge: An :class:`~verifiers.judge.LLMJudge`, backend or spec; None = no judge.
    """

    name = "search"

    def __init__(self, *, index: SearchIndex | None = None, k: int = 10, threshold: float = 0.6, p: float = 0.8,
                 query_threshold: float = 0.6, find_threshold: float = 0.5, answer_threshold: float = 0.8,
                 max_k: int = 10, max_query_words: int = 32, same_top: bool = True, drop_stopwords: bool = False,
                 message_mode: str = "answer", judge: LLMJudge | JudgeBackend | str | None = None,
                 judge_cache_dir: str | Path | None = None):
        for name, value in (("threshold", threshold), ("query_threshold", query_threshold),
                            ("find_threshold", find_threshold), ("answer_threshold", answer_threshold)):
            if not 0.0 <= value <= 1.0:
                raise VerifierError(f"SearchCascade {name} must be in [0, 1], got {value}")
        if not 0.0 < p < 1.0:
            raise VerifierError(f"SearchCascade p (rank persistence) must be in (0, 1), got {p}; 0.8 is usual")
        if k < 1 or max_k < 1:
            raise VerifierError(f"SearchCascade k and max_k must be >= 1, got k={k}, max_k={max_k}")
        if judge is not None and not isinstance(judge, LLMJudge):
            judge = LLMJudge(judge, cache_dir=judge_cache_dir)
        self.judge = judge
        messages = None if message_mode == "answer" else MessageRules(message_mode)
        final = judge is None
        super().__init__([
            WellFormedStage(),
            SearchShapeStage(messages, messages_final=final, answer_threshold=answer_threshold, max_k=max_k,
                             max_query_words=max_query_words),
            ExactStage(lambda a, ctx: _key(a, drop_stopwords)),
            SearchDecideStage(index, k=k, threshold=threshold, p=p, query_threshold=query_threshold,
                              find_threshold=find_threshold, answer_threshold=answer_threshold,
                              messages_final=final, same_top=same_top),
            JudgeStage(judge, kinds=("message", "tool_call"), rules=(
                "Searches are equivalent when they would retrieve the same information for this task; pages when "
                "they are the same page; answers when they state the same answer, and only one answer.")),
        ])
