"""What the loader saw of a config beyond its resolved specs (for ``export``, SPEC §12):
each process's ``envFile``, and the template values taken from the environment."""

from __future__ import annotations

import msgspec

from processman.domain.model import Config, ProcessSpec

#: Never written into an export, whatever the config says.
TOKEN_VARIABLE = "PROCESSMAN_TOKEN"


class Origin(msgspec.Struct, frozen=True, kw_only=True):
    """What the loader saw of one process beyond its resolved spec."""

    #: where the config names it: ``processes[0]``, ``[0]`` (legacy JSON), ``line 3``
    field: str = ""
    #: the absolute ``envFile``, if any
    env_file: str | None = None
    #: the keys its ``env`` table sets (the rest of ``spec.env`` came from ``envFile``)
    env_keys: tuple[str, ...] = ()
    #: the keys ``envFile`` sets
    env_file_keys: tuple[str, ...] = ()
    #: ``(field, NAME)`` for each template value taken from the loading environment
    from_environment: tuple[tuple[str, str], ...] = ()
    #: fields whose templates used ``PROCESSMAN_API``
    uses_api: tuple[str, ...] = ()


class Source(msgspec.Struct, frozen=True, kw_only=True):
    """A config to export: the specs, and each one's ``Origin`` by id."""

    config: Config
    origins: dict[str, Origin] = msgspec.field(default_factory=dict)
    #: ``(field, NAME)`` of values the ``api`` and ``logs`` sections took from the environment
    from_environment: tuple[tuple[str, str], ...] = ()

    def origin(self, spec: ProcessSpec) -> Origin:
        """The ``Origin`` of ``spec`` (an empty one for a config made in Python)."""
        return self.origins.get(spec.id, Origin(field=spec.id))
