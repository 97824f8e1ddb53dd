"""The search domain's corpus: the Python documentation that ships with the interpreter, indexed with BM25.

Nobody in this project wrote it and it installs offline with Python itself:

* the Language Reference topics of ``pydoc_data.topics`` (the text ``help("assignment")`` shows; 79
  topics, about 465k characters), as ``topic:<name>#<chunk>``;
* the docstrings of :data:`MODULES` (a fixed list of pure standard-library modules), as
  ``module:<name>#<chunk>``, and of their public functions and classes defined there, as
  ``api:<module>.<name>#<chunk>``, each opening with its signature (``json.dumps(obj, *, skipkeys=False,
  ...)``; defaults whose repr is not stable across runs, such as sentinels ``<object at 0x...>``, are
  shown as ``...``).

Texts are cut into chunks of about :data:`CHUNK_CHARS` characters on paragraph boundaries, so ids are
stable as long as the texts are. The texts change between Python versions (and occasionally between
patch releases), so the package ships the documents frozen from one interpreter (:data:`SNAPSHOT`, a
gzipped JSON Lines file of 230 kB, made by ``python -m pivot_envs.domains.search.corpus --freeze``):
the bundled questions hold on every Python the project supports. :func:`load_corpus` reads it once per
process and builds the BM25 index (about 0.4 s on one core); the index is shared read-only by every
sandbox. ``load_corpus(from_interpreter=True)`` builds the corpus from the running interpreter instead.

A corpus has a :attr:`Corpus.version`: the source Python ``major.minor`` and a sha256 over every
document id, title and text. Records store it, and a world whose record was built from another corpus
refuses to start (:class:`CorpusMismatchError`) instead of silently answering from other texts.

The documentation texts are Python's own, distributed under the PSF License Agreement (the same terms
as the interpreter they come from).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gzip
import hashlib
import importlib
import inspect
import json
import os
import re
import sys
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CORPUS_NAME = "python-docs"
CHUNK_CHARS = 1200
#: The documents frozen from one interpreter: a metadata line, then one :class:`Document` per line.
SNAPSHOT = Path(__file__).parent / "data" / "corpus.jsonl.gz"
#: Pure standard-library modules with useful docstrings; order does not matter (documents are sorted).
MODULES = tuple(sorted("""
base64 bisect calendar colorsys configparser contextlib copy csv dataclasses difflib fnmatch fractions ftplib
functools getopt gettext glob gzip heapq hmac html ipaddress json keyword linecache locale logging mimetypes
netrc numbers operator optparse pathlib pickle pkgutil plistlib pprint queue quopri random re reprlib sched
secrets selectors shelve shlex shutil smtplib statistics string subprocess tarfile tempfile textwrap threading
timeit tokenize traceback types urllib.parse uuid warnings wave weakref zipapp zipfile
""".split()))

_UNSTABLE_REPR = re.compile(r" at 0x[0-9a-fA-F]+|<.*>")


class CorpusMismatchError(RuntimeError):
    """A record was built from another corpus than the one this interpreter builds."""


@dataclass(frozen=True)
class Document:
    """One chunk of one source text.

    Attributes:
        doc_id: ``topic:<name>#<i>``, ``module:<name>#<i>`` or ``api:<module>.<name>#<i>``.
        kind: ``topic``, ``module`` or ``api``.
        name: The topic, module or dotted API name (``json.dumps``).
        title: A one-line title (a topic's heading, ``json (module)``, ``json.dumps (function)``).
        text: The chunk's text.
        chunk: The chunk number; ``chunks`` how many the source has.
    """

    doc_id: str
    kind: str
    name: str
    title: str
    text: str
    chunk: int
    chunks: int


class _Shown:
    """A default value shown by a fixed text in a signature."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def signature_text(obj: Any) -> str | None:
    """``(a, b=1, *, c=None)`` with annotations dropped and unstable default reprs shown as ``...``."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    params = []
    for p in sig.parameters.values():
        p = p.replace(annotation=inspect.Parameter.empty)
        if p.default is not inspect.Parameter.empty:
            text = repr(p.default)
            p = p.replace(default=_Shown("..." if _UNSTABLE_REPR.search(text) or len(text) > 60 else text))
        params.append(p)
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def chunk_text(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Paragraph-aligned chunks of about ``size`` characters (a long paragraph is cut at lines)."""
    pieces: list[str] = []
    for para in re.split(r"\n\s*\n", text.strip()):
        if len(para) <= 2 * size:
            pieces.append(para)
            continue
        lines, cur = para.splitlines(), ""
        for line in lines:
            if cur and len(cur) + len(line) > size:
                pieces.append(cur)
                cur = ""
            cur = f"{cur}\n{line}" if cur else line
        if cur:
            pieces.append(cur)
    chunks, cur = [], ""
    for piece in pieces:
        if cur and len(cur) + len(piece) > size:
            chunks.append(cur)
            cur = ""
        cur = f"{cur}\n\n{piece}" if cur else piece
    if cur:
        chunks.append(cur)
    return chunks or [""]


def _documents(kind: str, name: str, title: str, text: str) -> Iterable[Document]:
    parts = chunk_text(text)
    for i, part in enumerate(parts):
        yield Document(f"{kind}:{name}#{i}", kind, name, title, part, i, len(parts))


def _topic_documents() -> Iterable[Document]:
    from pydoc_data.topics import topics  # noqa: PLC0415 - ships with CPython

    for name in sorted(topics):
        text = topics[name].strip("\n")
        lines = text.splitlines()
        title = lines[0].strip() if lines else name
        # The heading is underlined with '*' in pydoc's text; the body follows it.
        body = "\n".join(lines[2:]) if len(lines) > 1 and set(lines[1].strip()) == {"*"} else text
        yield from _documents("topic", name, title, body)


def _api_members(module: Any) -> list[tuple[str, Any]]:
    names = getattr(module, "__all__", None) or [n for n in dir(module) if not n.startswith("_")]
    out = []
    for name in sorted(set(names)):
        obj = getattr(module, name, None)
        if not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj)):
            continue
        if getattr(obj, "__module__", None) != module.__name__ or not isinstance(obj.__doc__, str):
            continue  # re-exported from elsewhere, or undocumented (getdoc would borrow a base's doc)
        out.append((name, obj))
    return out


def _module_documents() -> Iterable[Document]:
    for mod_name in MODULES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # some modules warn on import (deprecations)
            module = importlib.import_module(mod_name)
        doc = inspect.cleandoc(module.__doc__ or "")
        if doc:
            yield from _documents("module", mod_name, f"{mod_name} (module)", doc)
        for name, obj in _api_members(module):
            doc = inspect.cleandoc(obj.__doc__)
            if len(doc) < 40:
                continue
            what = "class" if inspect.isclass(obj) else "function"
            sig = signature_text(obj)
            head = f"{mod_name}.{name}{sig}" if sig else f"{mod_name}.{name}"
            yield from _documents("api", f"{mod_name}.{name}", f"{mod_name}.{name} ({what})", f"{head}\n\n{doc}")


class Corpus:
    """Documents by id, a BM25 index over them (``bm25s``), and the corpus version."""

    def __init__(self, documents: Iterable[Document], *, python: str | None = None):
        try:
            import bm25s  # noqa: PLC0415 - the [search] extra
        except ImportError as exc:
            raise ImportError("pivot/Search-v0 indexes its corpus with 'bm25s', which is not installed: "
                              "pip install 'pivotrl[search]' (or pip install bm25s)") from exc

        self.docs: dict[str, Document] = {}
        for d in sorted(documents, key=lambda d: (d.kind, d.name, d.chunk)):
            self.docs[d.doc_id] = d
        self.ids = list(self.docs)
        h = hashlib.sha256()
        for d in self.docs.values():
            h.update(f"{d.doc_id}\0{d.title}\0{d.text}\0".encode())
        python = python or f"{sys.version_info.major}.{sys.version_info.minor}"
        self.version = {"name": CORPUS_NAME, "python": python,
                        "documents": len(self.ids), "sha256": h.hexdigest()}
        self._bm25s = bm25s
        self._retriever = bm25s.BM25()
        texts = [f"{d.title}\n{d.text}" for d in self.docs.values()]
        self._retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
        # Bare names resolve to the first chunk of the only source with that name (``json`` ->
        # ``module:json#0``); names two sources share (the ``types`` topic and module) do not.
        by_name: dict[str, set[str]] = {}
        for d in self.docs.values():
            if d.chunk == 0:
                by_name.setdefault(d.name.lower(), set()).add(d.doc_id)
        self._by_name = {k: next(iter(v)) for k, v in by_name.items() if len(v) == 1}

    def query_terms(self, query: str) -> list[str]:
        """The query's index terms (lower case, English stop words and one-letter words dropped)."""
        return self._bm25s.tokenize([query], stopwords="en", show_progress=False, return_ids=False)[0]

    def search(self, query: str, k: int) -> list[str]:
        """The ids of the ``k`` best documents for ``query`` (BM25 score > 0; ties in corpus order)."""
        terms = self.query_terms(query)
        if not terms or k <= 0:
            return []
        scores = self._retriever.get_scores(terms)
        ranked = sorted((i for i in range(len(self.ids)) if scores[i] > 0), key=lambda i: (-float(scores[i]), i))
        return [self.ids[i] for i in ranked[:k]]

    def resolve(self, doc_id: str) -> str | None:
        """The canonical id of ``doc_id``: exact, without ``#0``, or a bare unambiguous name; else None."""
        key = doc_id.strip()
        if key in self.docs:
            return key
        if "#" not in key and f"{key}#0" in self.docs:
            return f"{key}#0"
        return self._by_name.get(key.lower())

    def check_version(self, version: dict[str, Any] | None, *, where: str = "this record") -> None:
        """Raise :class:`CorpusMismatchError` when ``version`` (a record's) is not this corpus's."""
        if not version:
            return
        if version.get("name") != CORPUS_NAME or version.get("sha256") != self.version["sha256"]:
            raise CorpusMismatchError(
                f"{where} was built from corpus {version.get('name')!r} of Python {version.get('python')} "
                f"(sha256 {str(version.get('sha256'))[:12]}, {version.get('documents')} documents), but the "
                f"loaded corpus is {CORPUS_NAME!r} of Python {self.version['python']} sha256 "
                f"{self.version['sha256'][:12]} ({self.version['documents']} documents): its tool outputs and "
                "answers would not hold. Regenerate the records with this interpreter: python -m "
                "pivot_envs.domains.search.expert --out FILE.jsonl, then use --trajectories FILE.jsonl.")


def interpreter_documents() -> list[Document]:
    """The corpus's documents, built from the running interpreter's topics and docstrings."""
    return [*_topic_documents(), *_module_documents()]


def freeze(path: str | Path = SNAPSHOT) -> dict[str, Any]:
    """Write the running interpreter's documents to ``path`` (gzipped JSON Lines, byte-reproducible)."""
    docs = interpreter_documents()
    meta = {"name": CORPUS_NAME, "python": f"{sys.version_info.major}.{sys.version_info.minor}",
            "python_full": sys.version.split()[0], "documents": len(docs)}
    lines = [json.dumps(meta, ensure_ascii=False)]
    lines += [json.dumps(dataclasses.asdict(d), ensure_ascii=False) for d in docs]
    data = gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=9, mtime=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return meta


def read_snapshot(path: str | Path = SNAPSHOT) -> tuple[dict[str, Any], list[Document]]:
    """The metadata and documents of a frozen corpus."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        meta = json.loads(f.readline())
        docs = [Document(**json.loads(line)) for line in f if line.strip()]
    return meta, docs


@functools.cache
def load_corpus(*, from_interpreter: bool = False) -> Corpus:
    """The shipped corpus (or, with ``from_interpreter``, this interpreter's), built once per process."""
    if from_interpreter or not SNAPSHOT.exists():
        return Corpus(interpreter_documents())
    meta, docs = read_snapshot(SNAPSHOT)
    return Corpus(docs, python=meta["python"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Freeze the search domain's corpus from this interpreter.")
    parser.add_argument("--freeze", metavar="PATH", nargs="?", const=str(SNAPSHOT),
                        help=f"write the documents to PATH (default: the shipped {SNAPSHOT.name})")
    args = parser.parse_args(argv)
    if args.freeze is None:
        parser.error("nothing to do: pass --freeze [PATH]")
    meta = freeze(args.freeze)
    print(f"wrote {meta['documents']} documents of Python {meta['python_full']} to {args.freeze}")


if __name__ == "__main__":
    main()
