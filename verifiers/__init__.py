"""Functional-equivalence verifiers: is a sampled action as good as the demonstrated one?

>>> from verifiers import list_verifiers
>>> list_verifiers()
['code', 'exact', 'judge', 'nemo', 'search', 'terminal', 'tool_use', 'toolcall']

Domain cascades (``tool_use``, ``terminal``, ``code``, ``search``) run normalise -> exact -> rules ->
execution in twin forks -> optional LLM judge; ``exact``, ``toolcall`` (rules only) and ``nemo`` (NeMo
Gym's released comparator) are the baselines. Tools that need environments live a layer up:
``pivot_envs.verify_file`` scores a candidates file (``pivotrl verify``) and
``pivot_envs.check_verifier`` checks a verifier against an environment's demonstrations.
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
    "list_verifiers",
    "make_verifier",
    "register_verifier",
]
