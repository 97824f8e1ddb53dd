"""The LLM judge: strict labels, the swap check, the on-disk cache and the backends' errors."""

from __future__ import annotations

import sys

import pytest

from pivot_envs.actions import Action
from verifiers import Category, VerifierError, make_verifier
from verifiers.judge import CallableBackend, LLMJudge, OpenAIBackend, make_backend, parse_label


class Fake:
    """A judge that answers from the prompt; counts its calls."""

    def __init__(self, answer):
        self.answer, self.calls, self.model_id = answer, 0, "fake-judge"

    def __call__(self, prompt):
        self.calls += 1
        self.prompt = prompt
        return self.answer(prompt) if callable(self.answer) else self.answer


def first_is(prompt):
    # A biased judge: says equal only when the gold text comes first (as action A).
    a = prompt.split("<action_A>\n", 1)[1].split("\n", 1)[0]
    return "[[A=B]]" if a == "gold" else "[[A!=B]]"


def test_strict_parsing():
    assert parse_label("reasoning...\n[[A=B]]") is True
    assert parse_label("[[ A != B ]]") is False
    assert parse_label("[[A=B]] hmm, actually [[A!=B]]") is None
    assert parse_label("They are equal.") is None
    j = LLMJudge(Fake("I think they are the same."))
    verdict = j.judge("gold", "cand")
    assert verdict.category == Category.JUDGE_UNPARSABLE and verdict.score == 0 and verdict.method == "judge"


def test_both_orders_must_agree():
    assert LLMJudge(Fake(first_is)).judge("gold", "cand").category == Category.JUDGE_SWAP_DISAGREES
    assert LLMJudge(Fake(first_is), swap=False).judge("gold", "cand").equivalent
    assert LLMJudge(Fake("[[A!=B]]")).judge("gold", "cand").category == Category.JUDGE_NO
    assert LLMJudge(Fake("ok [[A=B]]")).judge("gold", "cand").equivalent


def test_answers_are_cached_on_disk_atomically(tmp_path):
    fake = Fake("[[A=B]]")
    first = LLMJudge(fake, cache_dir=tmp_path).judge("gold", "cand", context="ctx")
    assert fake.calls == 2
    again = LLMJudge(fake, cache_dir=tmp_path)  # a new process would see the same files
    assert again.judge("gold", "cand", context="ctx") == first and fake.calls == 2
    files = list(tmp_path.rglob("*"))
    assert any(f.suffix == ".json" for f in files) and not any(f.name.startswith(".tmp-") for f in files)
    other_model = Fake("[[A!=B]]")
    other_model.model_id = "another-judge"
    assert not LLMJudge(other_model, cache_dir=tmp_path).judge("gold", "cand", context="ctx").equivalent
    # a damaged entry is asked again
    for f in tmp_path.rglob("*.json"):
        f.write_text("{broken")
    fake.calls = 0
    assert LLMJudge(fake, cache_dir=tmp_path).judge("gold", "cand", context="ctx").equivalent and fake.calls == 2


def test_missing_openai_client_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(VerifierError, match=r"pivotrl\[judge\]"):
        OpenAIBackend("http://localhost:1/v1", "m")
    with pytest.raises(VerifierError, match="openai:BASE_URL#MODEL"):
        make_backend("claude:xyz")


def test_the_judge_decides_messages_in_the_tool_use_cascade(tool_use_records):
    from pivot_envs import TrajectoryEnv

    fake = Fake(lambda p: "[[A=B]]" if "goodbye" in p.lower() or "take care" in p.lower() else "[[A!=B]]")
    env = TrajectoryEnv(tool_use_records[:2], domain="tool_use", verifier=make_verifier("tool_use", judge=fake))
    env.reset(options={"trajectory": tool_use_records[1].id, "turn": 6})  # "Happy to help. Take care!"
    verdict = env.verify("You're welcome, goodbye!")
    assert verdict.equivalent and verdict.method == "judge" and verdict.details["rule"] == Category.MESSAGE_DIFFERS
    assert "<context>" in fake.prompt and "[user]" in fake.prompt and "Take care" in fake.prompt
    # calls are still decided by rules and execution, not by the judge
    env.reset(options={"trajectory": tool_use_records[1].id, "turn": 1})
    assert env.verify(env.expected_action()).method == "exact"
    env.close()


def test_judge_verifier_by_name():
    v = make_verifier("judge", backend=CallableBackend(lambda p: "[[A=B]]", "yes-judge"))
    assert v.verify(Action(content="hi"), Action(content="hello")).method == "judge"
    assert v.verify(Action(content="hi"), Action(content="  HI ")).method == "exact"
    assert v.verify(Action(content="hi"), Action(content="")).category == Category.EMPTY
