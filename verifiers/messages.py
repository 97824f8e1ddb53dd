"""Messages to the user: is a candidate message as good as the demonstrated one?

Three rule modes (the LLM judge, when a cascade has one, replaces them for messages):

* ``"facts"`` (default): the candidate must state every *fact* of the demonstrated message (ids such as
  ``W3390659`` or ``mia_kim_7534``, emails, numbers and amounts, and status words: the ``enum`` values of
  ``status`` parameters in the tool schemas), must not state ids, emails or amounts the demonstration
  does not (``EXTRA_FACTS``: a wrong order id or refund), must agree on whether it asks the user to
  confirm (asking "Shall I go ahead?" is not the same turn as announcing "Done"), and must share at least
  ``threshold`` of the demonstration's content words (Dice over stemmed tokens without stop words) with
  at least ``min_length`` of its length, so
  a bag of facts ("W3390659 $33.99 shall I") is not a message.
* ``"overlap"``: content-word Dice >= ``threshold`` only.
* ``"nemo_any"``: NeMo Gym's released rule: any non-empty message scores 1 when a message was expected.
  It is kept, under this name only, to compare with NVIDIA's recipe: it is an exploit (a policy learns
  to talk instead of acting), never a default.

>>> rules = MessageRules()
>>> rules.compare("Order W1 is pending.", "W1 is still pending.").equivalent
True
>>> rules.compare("Order W1 is pending.", "Order W2 is pending.").category
'MISSING_FACTS'
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from verifiers.core import Category, Verdict, VerifyContext
from verifiers.toolcall import dice, tokens

MODES = ("facts", "overlap", "nemo_any")

_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MONEY_RE = re.compile(r"[$€£]\s?(\d[\d,]*(?:\.\d+)?)")
_NUMBER_RE = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?![\w])")
_ID_RE = re.compile(r"\b(?=\w*\d)(?=\w*[A-Za-z])\w+\b")
_WORD_RE = re.compile(r"[a-z]+")

STOPWORDS = frozenset(
    "a an and are as at be been but by can could do does for from had has have i i'll i'm i've if in is it it's "
    "its me my of on or our so that the their them then there this to was we were will with would you you're "
    "your yours".split())

#: Phrases by which an assistant asks the user to confirm an action before taking it.
CONFIRM_PHRASES = ("shall i", "should i", "do you want me", "would you like me", "please confirm", "can you confirm",
                   "could you confirm", "confirm that", "(yes/no)", "go ahead?", "proceed?", "ok to proceed",
                   "okay to proceed", "is that correct?", "is that right?")


@dataclass(frozen=True)
class Facts:
    """What a message states that a paraphrase must keep."""

    ids: frozenset[str]
    emails: frozenset[str]
    numbers: frozenset[str]
    amounts: frozenset[str]
    statuses: frozenset[str]

    def required(self) -> set[str]:
        return set(self.ids) | set(self.emails) | set(self.numbers) | set(self.statuses)

    def checkable(self) -> set[str]:
        """Facts a candidate may not add: ids, emails and money amounts."""
        return set(self.ids) | set(self.emails) | set(self.amounts)


def _number(text: str) -> str:
    return repr(round(float(text.replace(",", "")), 6))


def stem(word: str) -> str:
    """A crude English stem for status words: cancelled = canceled = cancel, shipped = ship."""
    w = word.lower()
    for suffix in ("ing", "ed", "e"):
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            w = w[: -len(suffix)]
            break
    if len(w) > 3 and w[-1] == w[-2]:
        w = w[:-1]
    return w


def extract_facts(text: str, status_words: Iterable[str] = ()) -> Facts:
    """The ids, emails, numbers, money amounts and status words stated in ``text``."""
    emails = frozenset(e.lower().rstrip(".") for e in _EMAIL_RE.findall(text))
    rest = _EMAIL_RE.sub(" ", text)
    amounts = frozenset(_number(m) for m in _MONEY_RE.findall(rest))
    numbers = frozenset(_number(m) for m in _NUMBER_RE.findall(rest))
    ids = frozenset(i.lower() for i in _ID_RE.findall(rest))
    stems = {stem(w): w for w in status_words}
    statuses = frozenset(stems[s] for s in {stem(w) for w in _WORD_RE.findall(rest.lower())} if s in stems)
    return Facts(ids, emails, numbers, amounts, statuses)


def content_words(text: str) -> list[str]:
    """Stemmed tokens without stop words: what a paraphrase keeps ("refunded" = "refund")."""
    return [stem(t) if t.isalpha() else t for t in tokens(text) if t not in STOPWORDS]


def overlap(a: str, b: str) -> float:
    """Dice coefficient of the content-word multisets of two messages (1.0 when both have none)."""
    return dice(" ".join(content_words(a)), " ".join(content_words(b)))


def asks_confirmation(text: str) -> bool:
    """Whether the message asks the user to confirm something (see :data:`CONFIRM_PHRASES`)."""
    low = " ".join(text.lower().split())
    return any(p in low for p in CONFIRM_PHRASES)


def status_vocabulary(ctx: VerifyContext | None) -> frozenset[str]:
    """The ``enum`` values of ``status``-like parameters of the tools in ``ctx``."""
    words: set[str] = set()
    for tool in (ctx.tools if ctx else ()):
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        props = ((fn.get("parameters") or {}).get("properties") or {}) if isinstance(fn, dict) else {}
        for key, prop in props.items():
            if (key == "status" or key.endswith("_status")) and isinstance(prop, dict):
                words.update(v for v in prop.get("enum") or () if isinstance(v, str) and " " not in v)
    return frozenset(words)


class MessageRules:
    """Rule-level comparison of two messages to the user (see the module docstring).

    Args:
        mode: ``"facts"``, ``"overlap"`` or ``"nemo_any"``.
        threshold: Token Dice overlap the candidate needs with the demonstration.
        min_length: Shortest candidate, as a fraction of the demonstration's token count (facts mode).
        status_words: Extra status words; the tools' ``status`` enums are always included.
    """

    def __init__(self, mode: str = "facts", threshold: float = 0.4, status_words: Iterable[str] = (),
                 min_length: float = 1 / 3):
        if mode not in MODES:
            raise ValueError(f"message mode must be one of {MODES}, got {mode!r}")
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        self.mode, self.threshold, self.min_length = mode, threshold, min_length
        self.status_words = frozenset(status_words)
        self._vocab: tuple[int, frozenset[str]] | None = None

    def _status_words(self, ctx: VerifyContext | None) -> frozenset[str]:
        key = id(ctx.tools) if ctx else 0
        if self._vocab is None or self._vocab[0] != key:
            self._vocab = (key, self.status_words | status_vocabulary(ctx))
        return self._vocab[1]

    def compare(self, expected: str, candidate: str, ctx: VerifyContext | None = None) -> Verdict:
        if not candidate.strip():
            return Verdict.reject("rule", Category.EMPTY)
        if self.mode == "nemo_any":
            return Verdict.accept("rule", mode="nemo_any")
        similarity = round(overlap(expected, candidate), 4)
        if self.mode == "facts":
            vocab = self._status_words(ctx)
            gold, cand = extract_facts(expected, vocab), extract_facts(candidate, vocab)
            missing = sorted(gold.required() - cand.required())
            if missing:
                return Verdict.reject("rule", Category.MISSING_FACTS, missing=missing)
            extra = sorted(cand.checkable() - gold.checkable() - set(gold.numbers))
            if extra:
                return Verdict.reject("rule", Category.EXTRA_FACTS, extra=extra)
            short = len(tokens(candidate)) < self.min_length * len(tokens(expected))
            if short:
                return Verdict.reject("rule", Category.MESSAGE_DIFFERS, reason="much shorter than the demonstration",
                                      overlap=similarity)
            if asks_confirmation(expected) != asks_confirmation(candidate):
                return Verdict.reject("rule", Category.MESSAGE_DIFFERS, reason="asks for confirmation"
                                      if asks_confirmation(candidate) else "does not ask for confirmation")
        if similarity >= self.threshold:
            return Verdict.accept("rule", overlap=similarity)
        return Verdict.reject("rule", Category.MESSAGE_DIFFERS, overlap=similarity, threshold=self.threshold)
