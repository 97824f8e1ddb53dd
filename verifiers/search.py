"""The search cascade (``make_verifier("search")``) for browsing agents: queries judged by what they find.

Tool vocabulary (aliases in the ``*_TOOLS`` tuples): ``search`` ``{"query", "k"?}``, ``open``
``{"url"}``, ``find_in_page`` ``{"pattern"}`` and ``answer`` ``{"answer"}`` (a final answer may also be a
message to the user). One call per turn.

Stages, first decisive wins:

1. **form**: malformed or empty turns, ``WRONG_KIND``, one call per turn (``CALL_COUNT``), same tool
   category (``WRONG_TOOL``).
2. **exact**: canonical queries (:func:`canonical_query`: lower case, punctuation dropped, whitespace
   collapsed, stop words dropped when configured) or canonical URLs (:func:`canonical_url`: scheme,
   ``www.``, fragment, tracking parameters, query order and trailing slash do not count) are equal.
3. **decide by category**:
   * search: with an index, both queries run against it (the recorded / local index of the domain,
     never the live web) and the top-k result sets must overlap with Jaccard@k >= ``threshold``
     (``RESULTS_DIFFER``). The index is the ``index(query, k) -> [doc_id]`` callable given to the
     constructor (:func:`bm25_index` builds one with ``bm25s`` when it is installed), or else the
     context's sandbox and executor (the domain's own search tool, its results parsed as ids). Without
     either: query token Dice >= ``query_threshold`` (0.6; NeMo's ``search_pivot`` 0.3 on its half-scale
     overlap), a tentative verdict a judge may overrule.
   * open: a different canonical URL is ``TARGET_DIFFERS``.
   * find in page: the same normalised pattern, else a tentative ``ARG_VALUE``.
   * answers: the message rules (facts) or the judge.
4. **judge** (optional).
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
from verifiers.execution import executor_of
from verifiers.judge import JudgeBackend, JudgeStage, LLMJudge
from verifiers.messages import MessageRules
from verifiers.toolcall import dice, tokens

SEARCH_TOOLS = ("search", "web_search", "search_web", "google_search", "bing_search", "search_query")
OPEN_TOOLS = ("open", "open_url", "browse", "fetch", "visit", "open_page", "get_page", "read_url")
FIND_TOOLS = ("find", "find_in_page", "find_on_page")
ANSWER_TOOLS = ("answer", "final_answer", "submit", "submit_answer")
STOPWORDS = frozenset("a an and are as at be by for from how in is it of on or the to was what when where which who "
                      "why with".split())
_TRACKING = re.compile(r"^(utm_.*|fbclid|gclid|mc_cid|mc_eid|ref|ref_src|igshid)$")

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
    except ValueError:
        return url.strip()
    host = (parts.hostname or "").lower().removeprefix("www.")
    if parts.port and parts.port not in (80, 443):
        host += f":{parts.port}"
    path = parts.path.rstrip("/") or ""
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)))
    return urlunsplit(("http", host, path, query, ""))


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
        if k <= 0 or not tokens(query):
            return []
        results, scores = retriever.retrieve(bm25s.tokenize([query], stopwords="en", show_progress=False), k=k,
                                             show_progress=False)
        return [ids[int(i)] for i, s in zip(results[0], scores[0], strict=True) if s > 0]

    return search


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
        return ("message", " ".join(action.content.split()).casefold())
    out = []
    for call in action.tool_calls:
        category = category_of(call)
        if category == "search":
            out.append((category, canonical_query(_arg(call, "query", "q", "search_query"), drop_stopwords=drop_stopwords)))
        elif category == "open":
            out.append((category, canonical_url(_arg(call, "url", "link", "id"))))
        elif category in ("find", "answer"):
            out.append((category, " ".join(str(_arg(call, "pattern", "text", "answer") or "").split()).casefold()))
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
            value = next((item[k] for k in ("id", "doc_id", "docid", "url") if k in item), None)
            if value is not None:
                ids.append(canonical_url(value) if isinstance(value, str) and "/" in value else str(value))
        elif isinstance(item, (str, int)):
            ids.append(str(item))
    return ids


class SearchShapeStage(Stage):
    name = "rules"

    def __init__(self, messages: MessageRules, *, messages_final: bool = True):
        self.messages, self.messages_final = messages, messages_final

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        if expected.kind == "message":
            verdict = self.messages.compare(expected.content, candidate.content, ctx)
            return decide(verdict) if self.messages_final else tentative(verdict)
        if len(expected.tool_calls) != 1 or len(candidate.tool_calls) != 1:
            return decide(Verdict.reject("rule", Category.CALL_COUNT, expected=len(expected.tool_calls),
                                         got=len(candidate.tool_calls)))
        a, b = category_of(expected.tool_calls[0]), category_of(candidate.tool_calls[0])
        if a != b or (a == "unknown" and expected.tool_calls[0].name != candidate.tool_calls[0].name):
            known = ctx.tool_names()
            category = Category.UNKNOWN_TOOL if known and candidate.tool_calls[0].name not in known else Category.WRONG_TOOL
            return decide(Verdict.reject("rule", category, expected=expected.tool_calls[0].name,
                                         got=candidate.tool_calls[0].name))
        return None


class SearchDecideStage(Stage):
    name = "search"

    def __init__(self, index: SearchIndex | None, *, k: int = 10, threshold: float = 0.5,
                 query_threshold: float = 0.6, messages: MessageRules, messages_final: bool = True):
        self.index, self.k, self.threshold, self.query_threshold = index, k, threshold, query_threshold
        self.messages, self.messages_final = messages, messages_final

    def check(self, expected, candidate, ctx, memo, prior) -> Step | None:
        if expected.kind != "tool_call":
            return None
        want, got = expected.tool_calls[0], candidate.tool_calls[0]
        category = category_of(want)
        if category == "open":
            a, b = canonical_url(_arg(want, "url", "link", "id")), canonical_url(_arg(got, "url", "link", "id"))
            if a == b:
                return decide(Verdict.accept("rule"))
            return decide(Verdict.reject("rule", Category.TARGET_DIFFERS, expected=a, got=b))
        if category == "find":
            return tentative(Verdict.reject("rule", Category.ARG_VALUE, key="pattern"))
        if category == "answer":
            verdict = self.messages.compare(str(_arg(want, "answer", "text") or ""), str(_arg(got, "answer", "text") or ""), ctx)
            return decide(verdict) if self.messages_final else tentative(verdict)
        if category != "search":
            return tentative(Verdict.reject("rule", Category.ARG_VALUE))
        qa, qb = _arg(want, "query", "q", "search_query"), _arg(got, "query", "q", "search_query")
        if not isinstance(qb, str) or not qb.strip():
            return decide(Verdict.reject("rule", Category.ARG_MISSING if qb is None else Category.ARG_TYPE, keys=["query"]))
        results = self._results(want, got, ctx, memo)
        if results is None:
            overlap = round(dice(str(qa or ""), qb), 4)
            if overlap >= self.query_threshold:
                return tentative(Verdict.accept("rule", overlap=overlap))
            return tentative(Verdict.reject("rule", Category.ARG_VALUE, overlap=overlap, threshold=self.query_threshold))
        a, b = results
        jaccard = 1.0 if not a and not b else len(a & b) / len(a | b)
        details = {"jaccard_at_k": round(jaccard, 4), "k": self.k}
        if jaccard >= self.threshold:
            return decide(Verdict.accept("execution", **details))
        return decide(Verdict.reject("execution", Category.RESULTS_DIFFER, threshold=self.threshold, **details))

    def _results(self, want: ToolCall, got: ToolCall, ctx: VerifyContext, memo: Memo) -> tuple[set[str], set[str]] | None:
        if self.index is not None:
            def run(call: ToolCall) -> set[str]:
                return set(list(self.index(str(_arg(call, "query", "q", "search_query")), self.k))[: self.k])
        elif ctx.sandbox is not None:
            executor, sandbox = executor_of(ctx), ctx.sandbox

            def run(call: ToolCall) -> set[str]:
                fork = sandbox.fork(1)[0]
                try:
                    output, result = executor(fork, call)
                finally:
                    fork.close()
                return set(parse_result_ids(output)[: self.k]) if result.exit_code == 0 else set()
        else:
            return None
        if "expected_results" not in memo:
            memo["expected_results"] = run(want)
        return memo["expected_results"], run(got)


class SearchCascade(Cascade):
    """The search-domain verifier (see the module docstring).

    Args:
        index: ``index(query, k) -> [doc_id]`` over the domain's local index; None = use the context's
            sandbox and executor, or the query-overlap rule when there is none.
        k: How many top results count.
        threshold: Jaccard@k needed.
        query_threshold: Query token Dice of the no-index rule.
        drop_stopwords: Ignore stop words in canonical queries.
        judge: An :class:`~verifiers.judge.LLMJudge`, backend or spec; None = no judge.
    """

    name = "search"

    def __init__(self, *, index: SearchIndex | None = None, k: int = 10, threshold: float = 0.5,
                 query_threshold: float = 0.6, drop_stopwords: bool = False, message_mode: str = "facts",
                 judge: LLMJudge | JudgeBackend | str | None = None, judge_cache_dir: str | Path | None = None):
        if judge is not None and not isinstance(judge, LLMJudge):
            judge = LLMJudge(judge, cache_dir=judge_cache_dir)
        self.judge = judge
        messages = MessageRules(message_mode)
        super().__init__([
            WellFormedStage(),
            SearchShapeStage(messages, messages_final=judge is None),
            ExactStage(lambda a, ctx: _key(a, drop_stopwords)),
            SearchDecideStage(index, k=k, threshold=threshold, query_threshold=query_threshold, messages=messages,
                              messages_final=judge is None),
            JudgeStage(judge, kinds=("message", "tool_call"), rules=(
                "Searches are equivalent when they would retrieve the same information for this task; pages when "
                "they are the same page; answers when they state the same answer.")),
        ])
