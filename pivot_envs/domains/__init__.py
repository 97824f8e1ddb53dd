"""Bundled domains. Each module exposes ``DOMAIN``, a :class:`pivot_envs.domain.Domain`."""
