"""``pivotrl verify``: score a file of candidate actions against the demonstrations they answer.

Candidates are JSONL rows ``{"trajectory_id": str, "turn": int, "action": str | assistant message}``
(other fields, such as a label, are ignored). The output has one record per non-blank input line, in
order: the row number, its line, the trajectory and turn, and the :class:`~verifiers.core.Verdict`
fields (``score``, ``equivalent``, ``method``, ``category``, ``details``). A row that cannot be scored
gets an ``error`` field naming the problem and a zero error verdict with a stable category:

* ``BAD_ROW``: not JSON, not an object, a field missing or of the wrong type;
* ``UNKNOWN_TRAJECTORY``: no such trajectory in the trajectories file (with a "did you mean");
* ``TURN_OUT_OF_RANGE``: the trajectory has no such turn;
* ``BAD_FORMAT`` / ``BAD_JSON``: the action text or its call arguments do not parse (the verifier's
  own error verdict; the row is scored 0);
* ``INFRA_ERROR``: the state could not be restored (a sandbox fault, not the candidate's).

* ``DEGENERATE``: the candidate made the verifier raise (nesting too deep, a number too long); only
  that row scores 0, the other rows of its state are scored one by one.

Good rows are grouped by ``(trajectory_id, turn)``: each state is restored once through
:class:`~pivot_envs.core.TrajectoryEnv` and its rows are scored with one ``verify_batch`` call (one
execution of the demonstrated action per state).

With a judge (``judge="openai:URL#MODEL"`` or ``"hf:PATH"``, ``pivotrl verify --judge``) each record's
domain verifier (or the named one) is built with that judge as its last stage, and the summary gains
``judge``: the spec and the counts of questions, backend calls, cache hits, unparsable answers and
injection attempts (:attr:`~verifiers.judge.LLMJudge.stats`).
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from pathlib import Path
from typing import Any

from pivot_envs.actions import Action
from pivot_envs.core import TrajectoryEnv
from pivot_envs.registration import find_domain
from pivot_envs.trajectory import JsonLine, load_trajectories, read_jsonl
from verifiers.core import (
    DEGENERATE_ERRORS,
    Category,
    Verdict,
    Verifier,
    VerifierError,
    VerifyContext,
    make_verifier,
)

_ROW_ERRORS = (Category.BAD_ROW, Category.UNKNOWN_TRAJECTORY, Category.TURN_OUT_OF_RANGE, Category.INFRA_ERROR)


def verify_file(trajectories_path: str | Path, candidates_path: str | Path, out_path: str | Path | None = None,
                verifier: str | Verifier | None = None, *, progress: bool = False, judge: Any = None,
                judge_cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Score every row of ``candidates_path``; write the records to ``out_path`` (JSONL) when given.

    Args:
        trajectories_path: The trajectory records (JSONL) the candidates refer to.
        candidates_path: The candidate rows (JSONL).
        out_path: Where to write one JSON record per row; None writes nothing.
        verifier: A verifier name or instance; None = each record's domain verifier.
        progress: Show a progress bar over states.
        judge: A judge spec (``"openai:BASE_URL#MODEL"``, ``"hf:PATH"``), backend or
            :class:`~verifiers.judge.LLMJudge` added as the verifiers' last stage; None = no judge.
        judge_cache_dir: On-disk cache of the judge's answers.

    Returns:
        ``{"rows": [record, ...], "summary": {...}}``; the summary counts rows, scored rows, row errors,
        acceptances, the mean score of scored rows, restores, and verdicts by method and by category.
    """
    llm_judge = None
    if judge is not None:
        from verifiers.judge import LLMJudge  # noqa: PLC0415 - the judge's clients load on demand

        if isinstance(verifier, Verifier):
            raise VerifierError("a judge needs a verifier name (or none), not a verifier instance: build the "
                                "instance with judge=... instead")
        llm_judge = judge if isinstance(judge, LLMJudge) else LLMJudge(judge, cache_dir=judge_cache_dir)
    built: dict[str, Verifier] = {}

    def build(name: str) -> Verifier:
        # An unknown name, or a judge for a verifier without one, is the caller's mistake: raise now.
        if name not in built:
            if llm_judge is None:
                built[name] = make_verifier(name)
            elif name == "judge":
                built[name] = make_verifier(name, backend=llm_judge)
            else:
                try:
                    built[name] = make_verifier(name, judge=llm_judge)
                except TypeError as exc:
                    raise VerifierError(f"verifier {name!r} takes no judge; use --judge with tool_use, terminal, "
                                        f"code, search or judge, or drop --judge") from exc
        return built[name]

    if isinstance(verifier, str):
        verifier = build(verifier)
    loaded = load_trajectories(trajectories_path)
    trajectories = {t.id: t for t in loaded.trajectories}
    rows: list[dict[str, Any] | None] = []
    groups: dict[tuple[str, int], list[tuple[int, int, Action]]] = {}
    # read_jsonl never raises on content: non-UTF-8 bytes, UTF-16 files, deep nesting or 5,000-digit
    # numbers in a row are that row's BAD_ROW verdict, not a crash of the whole file.
    for item in read_jsonl(candidates_path):
        if item.line == 0:  # "no records": an empty file has no rows to report (the caller says so)
            continue
        index, line_no = len(rows), item.line
        parsed = _parse_row(item, trajectories, find_domain)
        if isinstance(parsed, dict):
            rows.append({"row": index, "line": line_no, **parsed})
            continue
        tid, turn, action = parsed
        rows.append(None)
        groups.setdefault((tid, turn), []).append((index, line_no, action))

    restores = 0
    env = None
    if groups:
        env = TrajectoryEnv(list(trajectories.values()), domain="generic", verifier=verifier)
        if llm_judge is not None and verifier is None:
            for traj in trajectories.values():  # every domain verifier with the judge, before any work
                build(env.domain_of(traj).verifier)
    try:
        for (tid, turn), members in _progress(groups.items(), progress):
            assert env is not None
            try:
                env.reset(options={"trajectory": tid, "turn": turn})
                restores += 1
                judged_by = verifier or (build(env.domain_of(trajectories[tid]).verifier) if llm_judge is not None
                                         else env.verifier_for(trajectories[tid]))
                verdicts = _verify_group(judged_by, env.expected_action(), [a for _, _, a in members],
                                         env.verify_context())
            except Exception as exc:  # noqa: BLE001 - one state that cannot be restored must not stop the file
                reason = f"could not restore trajectory {tid!r} turn {turn}: {type(exc).__name__}: {exc}"
                verdicts = [Verdict.error(Category.INFRA_ERROR, reason)] * len(members)
            for (index, line_no, action), verdict in zip(members, verdicts, strict=True):
                record: dict[str, Any] = {"row": index, "line": line_no, "trajectory_id": tid, "turn": turn,
                                          **verdict.to_dict()}
                if verdict.category == Category.INFRA_ERROR:
                    record["error"] = verdict.details.get("reason")
                elif action.malformed:
                    record["error"] = f"action not parsable: {action.malformed}"
                rows[index] = record
    finally:
        if env is not None:
            env.close()

    records: list[dict[str, Any]] = [r for r in rows if r is not None]
    summary = _summary(records, restores, [str(e) for e in loaded.errors])
    if llm_judge is not None:
        summary["judge"] = {"spec": llm_judge.backend.model_id, **llm_judge.stats}
    if out_path is not None:
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, ensure_ascii=False, default=str) + "\n")
    return {"rows": records, "summary": summary}


def _verify_group(verifier: Verifier, expected: Action, actions: list[Action], ctx: VerifyContext) -> list[Verdict]:
    """One ``verify_batch``; if a degenerate candidate makes it raise, each row alone, so only that row
    scores 0 (``DEGENERATE``) and the others keep their verdicts."""
    try:
        return verifier.verify_batch(expected, actions, ctx)
    except DEGENERATE_ERRORS:
        pass
    out = []
    for action in actions:
        try:
            out.append(verifier.verify(expected, action, ctx))
        except DEGENERATE_ERRORS as exc:
            out.append(Verdict.degenerate(f"verifier {getattr(verifier, 'name', '?')!r}", exc))
    return out


def _parse_row(item: JsonLine, trajectories: dict[str, Any], find_domain: Any) -> dict[str, Any] | tuple[str, int, Action]:
    """A (trajectory id, turn, action) triple, or the error record of a row that cannot be scored."""
    def bad(category: str, reason: str, tid: Any = None, turn: Any = None) -> dict[str, Any]:
        return {"trajectory_id": tid, "turn": turn, **Verdict.error(category, reason).to_dict(), "error": reason}

    line_no, obj = item.line, item.value
    if item.error is not None:
        where = f"line {line_no}" if line_no else "the candidates file"
        return bad(Category.BAD_ROW, f"{where}: {item.error}")
    if not isinstance(obj, dict):
        return bad(Category.BAD_ROW, f"line {line_no}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in ("trajectory_id", "turn", "action") if k not in obj]
    tid, turn = obj.get("trajectory_id"), obj.get("turn")
    if missing:
        return bad(Category.BAD_ROW, f"line {line_no}: missing field(s) {', '.join(missing)}", tid, turn)
    if not isinstance(tid, str):
        return bad(Category.BAD_ROW, f"line {line_no}: 'trajectory_id' must be a string, got {type(tid).__name__}",
                   tid, turn)
    if isinstance(turn, bool) or not isinstance(turn, int):
        return bad(Category.BAD_ROW, f"line {line_no}: 'turn' must be an integer, got {turn!r}", tid, turn)
    traj = trajectories.get(tid)
    if traj is None:
        close = difflib.get_close_matches(tid, list(trajectories), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return bad(Category.UNKNOWN_TRAJECTORY, f"line {line_no}: no trajectory {tid!r} in the trajectories file{hint}",
                   tid, turn)
    if not 0 <= turn < traj.num_turns:
        return bad(Category.TURN_OUT_OF_RANGE,
                   f"line {line_no}: trajectory {tid!r} has turns 0..{traj.num_turns - 1}, got turn {turn}", tid, turn)
    raw = obj["action"]
    domain = find_domain(traj.domain)
    fmt = domain.action_format if domain is not None else "hermes"
    if isinstance(raw, str):
        try:
            action = Action.parse(raw, format=fmt)
        except DEGENERATE_ERRORS as exc:  # the parser catches these itself; this guards older parsers
            return bad(Category.DEGENERATE, f"line {line_no}: action not parsable: {type(exc).__name__}", tid, turn)
    elif isinstance(raw, dict) and ("content" in raw or "tool_calls" in raw):
        try:
            action = Action.from_message(raw)
        except (TypeError, AttributeError, *DEGENERATE_ERRORS) as exc:
            return bad(Category.BAD_ROW, f"line {line_no}: 'action' is not an assistant message: {exc}", tid, turn)
    else:
        return bad(Category.BAD_ROW, f"line {line_no}: 'action' must be the raw assistant text or an assistant "
                   f"message dict with 'content' and/or 'tool_calls', got {type(raw).__name__}", tid, turn)
    return tid, turn, action


def _summary(records: list[dict[str, Any]], restores: int, load_errors: list[str]) -> dict[str, Any]:
    scored = [r for r in records if r["category"] not in _ROW_ERRORS]
    return {
        "rows": len(records),
        "scored": len(scored),
        "row_errors": len(records) - len(scored),
        "accepted": sum(1 for r in scored if r["equivalent"]),
        "mean_score": round(sum(r["score"] for r in scored) / len(scored), 6) if scored else None,
        "restores": restores,
        "by_method": dict(Counter(r["method"] for r in records).most_common()),
        "by_category": dict(Counter(r["category"] for r in records).most_common()),
        "trajectory_load_errors": load_errors,
    }


def _progress(items: Any, enabled: bool) -> Any:
    if not enabled:
        return items
    from rich.progress import track  # noqa: PLC0415

    items = list(items)
    return track(items, description="verifying states", total=len(items))
