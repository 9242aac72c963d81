"""The application layer: the supervisor services, the container that wires them, the CLI."""

from processman.app.container import Container

__all__ = ["Container"]
