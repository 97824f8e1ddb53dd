"""Out-of-domain (OOD) retention: small non-agentic tasks a base model learns and agentic training may erase.

The paper measures what post-training does to abilities outside the trained domain (SFT: -9.83 points
on average over eight benchmarks; PivotRL: +0.21). The demo's miniature uses three families written
into the package, each answered in one short assistant message and scored by exact match:

* ``arithmetic``: "What is 3 + 5?" -> "8" (every pair of one-digit numbers);
* ``strings``: "Repeat this word twice: apple" -> "apple apple" (copying from the prompt);
* ``facts``: "What is the capital of France?" -> "Paris" (recall).

The base model is trained on all of them (plus general agentic data); :func:`evaluate_ood` measures how
many each later model still gets right, greedily.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid", "Egypt": "Cairo",
    "Canada": "Ottawa", "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo", "Greece": "Athens",
    "Chile": "Santiago", "Cuba": "Havana", "Ireland": "Dublin", "Poland": "Warsaw", "Austria": "Vienna",
    "Portugal": "Lisbon", "Sweden": "Stockholm", "Finland": "Helsinki", "Hungary": "Budapest",
    "Thailand": "Bangkok", "Vietnam": "Hanoi", "Argentina": "Buenos Aires", "Colombia": "Bogota",
    "Morocco": "Rabat", "Ghana": "Accra", "Denmark": "Copenhagen", "Belgium": "Brussels",
    "Turkey": "Ankara", "Iran": "Tehran", "Nepal": "Kathmandu",
}
WORDS = ("apple", "river", "stone", "cloud", "tiger", "paper", "green", "music", "bread", "light",
         "honey", "ocean", "pilot", "lemon", "chair", "grape", "smile", "train", "house", "wheel")


@dataclass(frozen=True)
class OODItem:
    """One question with its one right answer."""

    family: str
    question: str
    answer: str

    def messages(self, with_answer: bool = False) -> list[dict[str, Any]]:
        msgs = [{"role": "user", "content": self.question}]
        if with_answer:
            msgs.append({"role": "assistant", "content": self.answer})
        return msgs


def ood_items() -> list[OODItem]:
    """Every OOD item (100 arithmetic, 20 string, 30 fact items), in a fixed order."""
    items = [OODItem("arithmetic", f"What is {a} + {b}?", str(a + b)) for a in range(10) for b in range(10)]
    items += [OODItem("strings", f"Repeat this word twice: {w}", f"{w} {w}") for w in WORDS]
    items += [OODItem("facts", f"What is the capital of {c}?", city) for c, city in CAPITALS.items()]
    return items


def eval_items(per_family: int = 0, seed: int = 0) -> list[OODItem]:
    """The retention set: every item, or ``per_family`` fixed random items of each family."""
    items = ood_items()
    if not per_family:
        return items
    rng = random.Random(seed)
    out = []
    for family in ("arithmetic", "strings", "facts"):
        pool = [i for i in items if i.family == family]
        out += rng.sample(pool, min(per_family, len(pool)))
    return out


def evaluate_ood(policy: Any, items: Sequence[OODItem] | None = None, batch_size: int = 64) -> dict[str, Any]:
    """Exact-match accuracy per family (and overall) of ``policy``'s first sample; use a greedy policy."""
    items = list(items if items is not None else ood_items())
    correct: dict[str, list[bool]] = {}
    for i in range(0, len(items), batch_size):
        batch = items[i : i + batch_size]
        samples = policy.sample([{"messages": it.messages(), "tools": []} for it in batch], n=1)
        for it, (s, *_) in zip(batch, samples, strict=True):
            correct.setdefault(it.family, []).append(s.text.strip() == it.answer)
    families = {f: sum(v) / len(v) for f, v in correct.items()}
    return {"families": families, "accuracy": sum(families.values()) / len(families) if families else 0.0,
            "items": len(items)}
