"""Policies, the PivotRL agent, baselines and evaluation.

>>> from agents import make_policy
>>> make_policy("random").name
'random'
"""

from agents.core import SPEC_FORMS, Policy, PolicySpecError, Sample, make_policy

__all__ = ["SPEC_FORMS", "Policy", "PolicySpecError", "Sample", "make_policy"]
