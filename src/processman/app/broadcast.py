"""Live subscriptions: each process's lines (``LogHub``) and every status change
(``StatusHub``), fanned out to their readers.

A reader that falls behind loses items, never slows the children or the manager: a log
reader's further lines are counted as dropped and reported (a gap marker) after the
lines it already has; a status reader gets a gap, then a fresh snapshot.
"""

from __future__ import annotations

import weakref
from collections import deque
from contextlib import contextmanager
from typing import TYPE_CHECKING, Literal, NamedTuple

import anyio

from processman.domain.ports import LogEntry

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from processman.domain.model import ProcessStatus
    from processman.domain.ports import LogBatch

#: Lines a subscriber may have waiting before new ones are dropped.
SUBSCRIBER_CAPACITY = 10_000


class Subscription:
    """One live reader of one process's output."""

    def __init__(self, capacity: int, *, named: bool = False) -> None:
        self._capacity = capacity
        self._named = named  # a group's: each line names its replica
        self._entries: deque[LogEntry] = deque()
        self._dropped = 0
        self._ready = anyio.Event()
        self._closed = False

    def push(self, batch: LogBatch) -> None:
        """Queue a batch (called by the hub, on the event loop; never waits)."""
        room = self._capacity - len(self._entries)
        lines = batch.lines
        if self._dropped or len(lines) > room:
            # keep order: once something is dropped, later lines wait behind the gap
            kept = [] if self._dropped else lines[: max(room, 0)]
            self._dropped += len(lines) - len(kept)
            lines = kept
        process = batch.process if self._named else None
        self._entries.extend(LogEntry(batch.time, batch.stream, line, process) for line in lines)
        self._ready.set()

    def close(self) -> None:
        """No more lines will come: ``receive`` returns what is queued, then ends."""
        self._closed = True
        self._ready.set()

    async def receive(self) -> tuple[list[LogEntry], int]:
        """Wait for lines; return them and how many were dropped right after them.

        Raises:
            anyio.EndOfStream: the manager has shut down and every line was received.
        """
        while not self._entries and not self._dropped:
            if self._closed:
                raise anyio.EndOfStream
            self._ready = anyio.Event()
            await self._ready.wait()
        entries = list(self._entries)
        self._entries.clear()
        dropped, self._dropped = self._dropped, 0
        return entries, dropped


class LogHub:
    """A ``LogSink`` that hands every batch to the subscribers of its process."""

    def __init__(
        self,
        capacity: int = SUBSCRIBER_CAPACITY,
        group_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self._capacity = capacity
        self._subscribers: dict[str, set[Subscription]] = {}
        self._group_subscribers: dict[str, set[Subscription]] = {}
        self._group_of = group_of  # a replica's group id

    def write(self, batch: LogBatch) -> None:
        """Fan the batch out; a no-op when nobody listens."""
        for subscription in self._subscribers.get(batch.process, ()):
            subscription.push(batch)
        if self._group_subscribers and self._group_of is not None:
            group = self._group_of(batch.process)
            for subscription in self._group_subscribers.get(group or "", ()):
                subscription.push(batch)

    def close(self) -> None:
        """The manager has shut down: end every subscription once it has its last lines."""
        for table in (self._subscribers, self._group_subscribers):
            for subscriptions in table.values():
                for subscription in subscriptions:
                    subscription.close()

    @contextmanager
    def subscribe(self, process_id: str, *, group: bool = False) -> Iterator[Subscription]:
        """Receive the process's lines (``group``: every replica's of the group, replicas
        added meanwhile included, each line naming its replica) from now on, until the
        block ends."""
        subscription = Subscription(self._capacity, named=group)
        table = self._group_subscribers if group else self._subscribers
        table.setdefault(process_id, set()).add(subscription)
        try:
            yield subscription
        finally:
            table[process_id].discard(subscription)
            if not table[process_id]:
                del table[process_id]

    def subscriber_count(self, process_id: str) -> int:
        """How many subscribers a process has (for tests and metrics)."""
        return len(self._subscribers.get(process_id, ()))


#: Status events a reader may have waiting before it falls behind (then: a gap and a
#: fresh snapshot).
STATUS_CAPACITY = 10_000


class StatusEvent(NamedTuple):
    """One item of ``ProcessManager.events()``.

    ``kind`` is ``"status"`` (``status`` is the process's new status object), ``"removed"``
    (the process ``process_id`` is gone: scaled down or reloaded away) or ``"gap"`` (the
    reader fell behind and lost events: a fresh snapshot of every process follows).
    """

    kind: Literal["status", "removed", "gap"]
    process_id: str
    status: ProcessStatus | None = None


class StatusStream:
    """One reader of the status events: a snapshot first, then every change.

    An async iterator; also an async context manager, whose end stops the subscription
    at once (otherwise it ends when the iterator is garbage-collected).
    """

    def __init__(self, hub: StatusHub, capacity: int) -> None:
        self._hub = hub
        self._capacity = capacity
        self._queue: deque[StatusEvent] = deque(hub.snapshot_events())
        self._fell_behind = False
        self._ready = anyio.Event()
        self._closed = False

    def push(self, event: StatusEvent) -> None:
        """Queue an event (on the event loop; never waits)."""
        if self._fell_behind:
            return
        if len(self._queue) >= self._capacity:
            self._fell_behind = True
            self._queue.clear()
        else:
            self._queue.append(event)
        self._ready.set()

    def close(self) -> None:
        """No more events: the iterator ends once the queued ones are read."""
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> StatusStream:
        return self

    async def __anext__(self) -> StatusEvent:
        while True:
            if self._fell_behind:
                self._fell_behind = False
                self._queue.extend(self._hub.snapshot_events())
                return StatusEvent("gap", "")
            if self._queue:
                return self._queue.popleft()
            if self._closed:
                raise StopAsyncIteration
            self._ready = anyio.Event()
            await self._ready.wait()

    async def __aenter__(self) -> StatusStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop receiving events."""
        self._hub.unsubscribe(self)
        self._closed = True


class StatusHub:
    """Fans status changes out to every ``StatusStream``; costs nothing without readers."""

    def __init__(
        self, snapshot: Callable[[], list[ProcessStatus]], capacity: int = STATUS_CAPACITY
    ) -> None:
        self._snapshot = snapshot
        self._capacity = capacity
        self._streams: weakref.WeakSet[StatusStream] = weakref.WeakSet()

    @property
    def listening(self) -> bool:
        """Whether anybody reads the events (else no status object need be made)."""
        return bool(self._streams)

    def snapshot_events(self) -> list[StatusEvent]:
        """A ``status`` event for every process, now."""
        return [StatusEvent("status", s.id, s) for s in self._snapshot()]

    def subscribe(self) -> StatusStream:
        """A new reader: the snapshot is its first events."""
        stream = StatusStream(self, self._capacity)
        self._streams.add(stream)
        return stream

    def unsubscribe(self, stream: StatusStream) -> None:
        """Forget a reader."""
        self._streams.discard(stream)

    def publish(self, event: StatusEvent) -> None:
        """Hand an event to every reader."""
        for stream in list(self._streams):
            stream.push(event)

    def close(self) -> None:
        """The manager has shut down: every reader ends after its queued events."""
        for stream in list(self._streams):
            stream.close()
