"""Functional-equivalence verifiers: is a sampled action as good as the demonstrated one?

>>> from verifiers import list_verifiers
>>> list_verifiers()
['exact', 'toolcall']
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
