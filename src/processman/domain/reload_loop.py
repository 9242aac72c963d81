"""Development mode: noticing a process that reloads itself.

A process that writes into its own watched tree (a cache, an upload, a generated file)
is reloaded by its own write, starts, writes again, and so on for ever. nodemon and
watchfiles say nothing; processman says once which files do it, so that the developer
can add them to ``watchIgnore``.
"""

from __future__ import annotations

#: Reloads in a row, each for the same files and each soon after the one before, that
#: make a loop. Five keeps a developer's quick saves of one file from counting.
REPEATS = 5

#: Seconds between two such reloads at most (the process's start-up plus its write).
WITHIN = 2.0


class ReloadLoop:
    """Watches the reloads of one process for the same change coming back at once."""

    def __init__(self, repeats: int = REPEATS, within: float = WITHIN) -> None:
        self.repeats = repeats
        self.within = within
        self._paths: frozenset[str] = frozenset()
        self._last = float("-inf")
        self._count = 0

    def reload(self, now: float, paths: frozenset[str]) -> bool:
        """Note a reload for ``paths`` at ``now`` (monotonic seconds).

        Returns:
            True once per loop: when this reload makes ``repeats`` in a row.
        """
        same = paths == self._paths and now - self._last <= self.within
        self._count = self._count + 1 if same else 1
        self._paths, self._last = paths, now
        return self._count == self.repeats
