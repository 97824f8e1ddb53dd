"""Environment ids and domains: ``pivot/<Domain>-v0`` through Gymnasium's registry.

Built-in domains register when :mod:`pivot_envs` is imported; third-party packages add theirs through
the ``pivotrl.domains`` entry-point group, whose entries point at a :class:`~pivot_envs.domain.Domain`
(or a zero-argument callable returning one)::

    [project.entry-points."pivotrl.domains"]
    my_domain = "my_package.domain:DOMAIN"

``gymnasium.make("pivot/ToolUse-v0")`` then works, and :func:`make` adds a "did you mean" error.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys
from importlib.metadata import entry_points
from typing import Any

import gymnasium as gym

from pivot_envs.domain import _CREATION_HOOKS, GENERIC, Domain
from pivot_envs.trajectory import register_tool_schemas

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "pivotrl.domains"
_DOMAINS: dict[str, Domain] = {}
_BUILTINS = ("pivot_envs.domains.tool_use:DOMAIN", "pivot_envs.domains.terminal:DOMAIN")
_plugins_loaded = False


class UnknownEnvError(KeyError):
    """An env id or domain name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


def register_domain(domain: Domain, *, replace: bool = False) -> Domain:
    """Register ``domain`` under its name and its env id (with Gymnasium too).

    Its ``tool_schemas`` become what its records' ``"tools": "domain"`` resolves to.
    """
    if not domain.env_id.startswith("pivot/") or not domain.env_id.endswith(tuple(f"-v{i}" for i in range(10))):
        raise ValueError(f"env ids look like 'pivot/<Name>-v<N>', got {domain.env_id!r}")
    existing = _DOMAINS.get(domain.name)
    if existing is not None and existing is not domain and not replace:
        raise ValueError(f"domain {domain.name!r} is already registered (by {existing.env_id}); pass replace=True")
    _DOMAINS[domain.name] = domain
    register_tool_schemas(domain.name, domain.tool_schemas)
    if domain.env_id in gym.registry:
        del gym.registry[domain.env_id]
    gym.register(id=domain.env_id, entry_point="pivot_envs.core:TrajectoryEnv", kwargs={"domain": domain.name})
    return domain


def _load(ref: str) -> Domain:
    module, _, attr = ref.partition(":")
    obj = getattr(importlib.import_module(module), attr)
    domain = obj() if callable(obj) and not isinstance(obj, Domain) else obj
    if not isinstance(domain, Domain):
        raise TypeError(f"{ref} must be a pivot_envs.Domain or a callable returning one, got {type(domain).__name__}")
    return domain


def load_plugins(*, reload: bool = False) -> list[str]:
    """Register the built-in domains and every ``pivotrl.domains`` entry point. Returns their names.

    A broken plugin is logged and skipped; it never breaks the import of the toolkit.
    """
    global _plugins_loaded
    if _plugins_loaded and not reload:
        _resolve_pending()
        return sorted(_DOMAINS)
    register_domain(GENERIC, replace=True)
    for ref in _BUILTINS:
        register_domain(_load(ref), replace=True)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.value in _BUILTINS:
            continue
        module = ep.value.partition(":")[0]
        if _initializing(module):
            # The plugin imported pivot_envs, which is loading the plugins: its DOMAIN does not exist yet.
            # It registers when it is created (see _register_pending) or on the next registry call.
            _PENDING[module] = ep
            continue
        _register_entry_point(ep)
    _plugins_loaded = True
    return sorted(_DOMAINS)


def _register_entry_point(ep: Any) -> None:
    """Load one ``pivotrl.domains`` entry point and register its Domain; a broken one is logged and skipped."""
    try:
        domain = ep.load()
        domain = domain() if callable(domain) and not isinstance(domain, Domain) else domain
        if not isinstance(domain, Domain):
            raise TypeError(f"expected a Domain, got {type(domain).__name__}")
        register_domain(domain, replace=True)
    except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the toolkit
        logger.warning("skipping domain plugin %s = %s: %s", ep.name, ep.value, exc)


def _initializing(module: str) -> bool:
    spec = getattr(sys.modules.get(module), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


#: Plugins found mid-import by load_plugins, by module name.
_PENDING: dict[str, Any] = {}


def _register_pending(domain: Domain, module: str) -> None:
    if module in _PENDING:
        register_domain(domain, replace=True)


def _resolve_pending() -> None:
    for module, ep in list(_PENDING.items()):
        if _initializing(module):
            continue
        del _PENDING[module]
        _register_entry_point(ep)


_CREATION_HOOKS.append(_register_pending)


def list_domains() -> list[Domain]:
    load_plugins()
    return [_DOMAINS[k] for k in sorted(_DOMAINS)]


def find_domain(name_or_id: str) -> Domain | None:
    """The domain with this name or env id, or None."""
    if name_or_id in _DOMAINS:
        return _DOMAINS[name_or_id]
    return next((d for d in _DOMAINS.values() if d.env_id == name_or_id), None)


def get_domain(name_or_id: str) -> Domain:
    """The domain with this name or env id; raises :class:`UnknownEnvError` with suggestions."""
    load_plugins()
    domain = find_domain(name_or_id)
    if domain is None:
        raise UnknownEnvError(_unknown_message(name_or_id))
    return domain


def _unknown_message(name: str) -> str:
    candidates = [d.env_id for d in _DOMAINS.values()] + list(_DOMAINS)
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    known = ", ".join(sorted(d.env_id for d in _DOMAINS.values()))
    return f"unknown environment {name!r}.{hint} Registered: {known}. (`pivotrl envs list` shows them.)"


def make(env_id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` for pivot envs, with a "did you mean" error for unknown ids."""
    get_domain(env_id)
    return gym.make(env_id, **kwargs)
