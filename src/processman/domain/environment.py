"""The environment a child gets (SPEC §1), as a pure function of its inputs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from processman.domain.interpreter import is_python

if TYPE_CHECKING:
    from collections.abc import Mapping

    from processman.domain.model import ProcessSpec


def child_environment(
    inherited: Mapping[str, str], spec: ProcessSpec, api_url: str
) -> dict[str, str]:
    """Lowest first: the manager's environment without ``PROCESSMAN_TOKEN``, then the
    spec's ``env`` (``envFile`` already merged under it), then ``PROCESSMAN_ID``,
    ``PROCESSMAN_GROUP``, a replica's ``PROCESSMAN_REPLICA``, ``PORT`` from ``port`` (plus
    the replica's index) and, when the API is on, ``PROCESSMAN_API``;
    ``PYTHONUNBUFFERED=1`` for Python scripts unless ``env`` sets it."""
    env = {key: value for key, value in inherited.items() if key != "PROCESSMAN_TOKEN"}
    env.update(spec.env)
    env["PROCESSMAN_ID"] = spec.id
    env["PROCESSMAN_GROUP"] = spec.group_id
    if spec.replica is not None:
        env["PROCESSMAN_REPLICA"] = str(spec.replica)
    if spec.port is not None:
        env["PORT"] = str(spec.port + (spec.replica or 0))
    if api_url:
        env["PROCESSMAN_API"] = api_url
    if is_python(spec) and "PYTHONUNBUFFERED" not in spec.env:
        env["PYTHONUNBUFFERED"] = "1"
    return env
