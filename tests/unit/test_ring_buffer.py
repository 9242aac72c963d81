"""The ring buffer keeps batches whole but must answer exactly as a deque of lines would."""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from processman.adapters.logs import RingBufferSink
from processman.domain.ports import LogBatch


@given(
    capacity=st.integers(0, 12),
    batches=st.lists(st.tuples(st.sampled_from(["a", "b"]), st.integers(0, 20)), max_size=30),
    counts=st.lists(st.integers(-1, 30), min_size=1, max_size=5),
)
def test_tail_equals_a_deque_of_lines(
    capacity: int, batches: list[tuple[str, int]], counts: list[int]
) -> None:
    sink = RingBufferSink(capacity)
    expected: dict[str, deque[str]] = {"a": deque(maxlen=capacity), "b": deque(maxlen=capacity)}
    serial = 0
    for process, size in batches:
        lines = [f"{process}{serial + i}" for i in range(size)]
        serial += size
        sink.write(LogBatch(process, "stdout", 1, datetime.now(UTC), lines))
        expected[process].extend(lines)
        for count in counts:
            for pid in ("a", "b"):
                got = [entry.line for entry in sink.tail(pid, count)]
                assert got == (list(expected[pid])[-count:] if count > 0 else [])


def test_entries_keep_their_batch_time_and_stream() -> None:
    sink = RingBufferSink(3)
    first, second = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    sink.write(LogBatch("p", "stdout", 1, first, ["1", "2"]))
    sink.write(LogBatch("p", "stderr", 1, second, ["3", "4"]))
    assert [(e.time, e.stream, e.line) for e in sink.tail("p", 10)] == [
        (first, "stdout", "2"),
        (second, "stderr", "3"),
        (second, "stderr", "4"),
    ]
    assert sink.tail("unknown", 5) == []
