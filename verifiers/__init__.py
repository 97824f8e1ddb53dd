"""Functional-equivalence verifiers: is a sampled action as good as the demonstrated one?

>>> from verifiers import list_verifiers
>>> list_verifiers()
['code', 'exact', 'judge', 'nemo', 'search', 'terminal', 'tool_use', 'toolcall']

Domain cascades (``tool_use``, ``terminal``, ``code``, ``search``) run normalise -> exact -> rules ->
execution in twin forks -> optional LLM judge; ``exact``, ``toolcall`` (rules only) and ``nemo`` (NeMo
Gym's released comparator) are the baselines. ``verify_file`` scores a candidates file
(``pivotrl verify``); ``check_verifier`` checks a verifier against an environment's demonstrations.
"""

from verifiers.core import (
    METHODS,
    Category,
    Verdict,
    Verifier,
    VerifierError,
    VerifyContext,
    list_verifiers,
    make_verifier,
    register_verifier,
)

__all__ = [
    "METHODS",
    "Category",
    "Verdict",
    "Verifier",
    "VerifierError",
    "VerifyContext",
    "check_verifier",
    "list_verifiers",
    "make_verifier",
    "register_verifier",
    "verify_file",
]

_LAZY = {"verify_file": "verifiers.batch", "check_verifier": "verifiers.checker"}


def __getattr__(name: str):
    # Keep `import verifiers` light: these pull in pivot_envs and the sandboxes on first use.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'verifiers' has no attribute {name!r}")
