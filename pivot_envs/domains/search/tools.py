"""The search domain's tools: ``search``, ``open`` and ``find`` over the corpus of :mod:`.corpus`.

The world state is small and JSON-able: ``{"opened": doc_id | None, "visited": [doc_id, ...]}``. The
corpus and its index live outside it (one per process, shared read-only), so a snapshot is a copy of two
fields. Only ``open`` writes: ``search`` and ``find`` read, so the state digest changes exactly when
the agent opens a document, and two searches that show the same results leave the same world.

Limits are the domain's, never the model's: at most :data:`MAX_K` results, :data:`MAX_QUERY_WORDS`
words or :data:`MAX_QUERY_CHARS` characters per query (a query that is the whole vocabulary is an
error, not a way to see every document), :data:`MAX_OPEN_CHARS` characters per opened document and
:data:`MAX_FIND_MATCHES` lines per ``find``. Bad arguments raise :class:`~sandboxes.inprocess.ToolError`,
which the agent sees as an error result naming what it sent and what is allowed.
"""

from __future__ import annotations

import re
from typing import Any

from pivot_envs.domains.search.corpus import load_corpus
from sandboxes.inprocess import ToolError

DEFAULT_K = 5
MAX_K = 10
MAX_QUERY_WORDS = 32
MAX_QUERY_CHARS = 300
MAX_OPEN_CHARS = 4000
MAX_FIND_MATCHES = 20
MAX_PATTERN_CHARS = 200
SNIPPET_CHARS = 160
_WORD = re.compile(r"\b\w\w+\b")  # the index's own token pattern


def _snippet(text: str, terms: set[str]) -> str:
    """The first line holding the most query terms (the first line when none does), shortened."""
    best, best_hits = "", -1
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        hits = len(terms & set(_WORD.findall(line.lower()))) if terms else 0
        if hits > best_hits:
            best, best_hits = line, hits
    return best if len(best) <= SNIPPET_CHARS else best[: SNIPPET_CHARS - 3] + "..."


def search(state: dict[str, Any], query: str, k: int = DEFAULT_K) -> list[dict[str, str]]:
    """Rank documents for ``query`` with BM25; returns ``[{"doc_id", "title", "snippet"}]``, best first."""
    if not isinstance(query, str) or not query.strip():
        raise ToolError(f"search needs a non-empty string 'query', got {query!r}")
    if len(query) > MAX_QUERY_CHARS or len(query.split()) > MAX_QUERY_WORDS:
        raise ToolError(f"query too long ({len(query.split())} words, {len(query)} characters); at most "
                        f"{MAX_QUERY_WORDS} words and {MAX_QUERY_CHARS} characters: search for a few key terms")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise ToolError(f"k must be an integer from 1 to {MAX_K}, got {k!r}")
    corpus = load_corpus()
    terms = set(corpus.query_terms(query))
    return [{"doc_id": i, "title": corpus.docs[i].title, "snippet": _snippet(corpus.docs[i].text, terms)}
            for i in corpus.search(query, k)]


def open_document(state: dict[str, Any], doc_id: str) -> dict[str, Any]:
    """Open a document by id (``module:json#0``; ``module:json`` and a bare unique name ``json`` mean chunk 0)."""
    if not isinstance(doc_id, str) or not doc_id.strip():
        raise ToolError(f"open needs a string 'doc_id' such as 'module:json#0', got {doc_id!r}")
    corpus = load_corpus()
    resolved = corpus.resolve(doc_id)
    if resolved is None:
        raise ToolError(f"no document {doc_id[:100]!r}; use a doc_id from search results (like 'module:json#0')")
    doc = corpus.docs[resolved]
    state["opened"] = resolved
    state.setdefault("visited", []).append(resolved)
    text = doc.text if len(doc.text) <= MAX_OPEN_CHARS else doc.text[:MAX_OPEN_CHARS] + "\n[... truncated]"
    nxt = f"{doc.kind}:{doc.name}#{doc.chunk + 1}" if doc.chunk + 1 < doc.chunks else None
    return {"doc_id": resolved, "title": doc.title, "chunk": f"{doc.chunk + 1} of {doc.chunks}", "next": nxt,
            "text": text}


def find(state: dict[str, Any], pattern: str) -> dict[str, Any]:
    """Lines of the opened document containing ``pattern`` (literal, case-insensitive)."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise ToolError(f"find needs a non-empty string 'pattern', got {pattern!r}")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ToolError(f"pattern too long ({len(pattern)} characters, at most {MAX_PATTERN_CHARS})")
    opened = state.get("opened")
    if not opened:
        raise ToolError("no document is open: open one with open(doc_id) first")
    needle = pattern.strip().casefold()
    lines = load_corpus().docs[opened].text.splitlines()
    hits = [{"line": n, "text": line.strip()[:200]} for n, line in enumerate(lines, 1) if needle in line.casefold()]
    return {"doc_id": opened, "matches": hits[:MAX_FIND_MATCHES], "total": len(hits)}


FUNCTIONS = {"search": search, "open": open_document, "find": find}


def _tool(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": properties, "required": required}}}


TOOLS = [
    _tool("search", "Search the Python documentation (BM25). Returns doc ids, titles and snippets, best first.",
          {"query": {"type": "string", "description": "A few key terms."},
           "k": {"type": "integer", "description": f"How many results (1-{MAX_K}, default {DEFAULT_K}).",
                 "default": DEFAULT_K}}, ["query"]),
    _tool("open", "Open a document by its doc_id (from search results).",
          {"doc_id": {"type": "string", "description": "Like 'module:json#0'."}}, ["doc_id"]),
    _tool("find", "Find the lines of the open document that contain a text (case-insensitive).",
          {"pattern": {"type": "string"}}, ["pattern"]),
]
