"""The quiet period of development mode, kept in the watch thread, with explicit times."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from processman.adapters.watch import QuietPeriod, _stamped_since, last_change, watch_steps

if TYPE_CHECKING:
    from pathlib import Path


def unknown(paths: set[str]) -> float | None:
    return None


def test_held_paths_are_due_a_quiet_period_after_the_last_change() -> None:
    quiet = QuietPeriod(0.05)
    assert quiet.remaining(0.0) is None
    quiet.add({"a"}, 1.000)
    quiet.add({"b"}, 1.040)  # handed over late, but changed within the period
    assert quiet.take_due(1.080, unknown) == set()
    assert abs((quiet.remaining(1.080) or 0) - 0.01) < 1e-9
    assert quiet.take_due(1.090, unknown) == {"a", "b"}
    assert quiet.remaining(1.090) is None
    assert quiet.take_due(5.0, unknown) == set()


def test_a_batch_handed_over_late_does_not_move_the_deadline_back() -> None:
    quiet = QuietPeriod(0.05)
    quiet.add({"a"}, 2.0)
    quiet.add({"b"}, 1.9)
    assert quiet.take_due(2.049, unknown) == set()
    assert quiet.take_due(2.05, unknown) == {"a", "b"}


def test_a_path_written_again_before_the_watch_says_so_moves_the_deadline() -> None:
    # the watch thread starved: the burst went on, the watch had not told of it yet
    quiet = QuietPeriod(0.05)
    quiet.add({"a"}, 1.0)
    assert quiet.take_due(1.06, lambda paths: 1.03) == set()
    assert abs((quiet.remaining(1.06) or 0) - 0.02) < 1e-9
    assert quiet.take_due(1.08, lambda paths: 1.03) == {"a"}


def test_a_change_time_older_than_the_deadline_does_not_hold_it() -> None:
    quiet = QuietPeriod(0.05)
    quiet.add({"a"}, 1.0)
    assert quiet.take_due(1.05, lambda paths: 0.5) == {"a"}


def test_the_held_paths_off_the_watch_are_their_change_times(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x")
    now = time.monotonic()
    got = _stamped_since({str(path), str(tmp_path / "gone.py")})
    assert got is not None and now - 0.05 <= got <= now + 0.01
    assert _stamped_since({str(tmp_path / "gone.py")}) is None


def test_nothing_kept_holds_nothing() -> None:
    quiet = QuietPeriod(0.05)
    quiet.add(set(), 1.0)
    assert quiet.remaining(1.0) is None


def test_a_removed_path_came_a_step_before_the_return_at_the_latest(tmp_path: Path) -> None:
    gone = {str(tmp_path / "gone.py")}
    assert last_change(gone, returned=10.03, step=0.02, capped=False) == 10.03 - 0.02


def test_a_path_is_dated_by_its_inode_change_time(tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text("x")  # now: within the last step
    now = time.monotonic()
    got = last_change({str(path)}, returned=now, step=0.02, capped=False)
    assert now - 0.02 <= got <= now
    # a modification time set back (touch -d, cp -p, tar) does not move the change back
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    assert last_change({str(path)}, returned=now, step=0.02, capped=False) >= now - 0.02
    # a change time older than the step before (another clock) is kept to that bound
    later = now + 60
    assert last_change({str(path)}, returned=later, step=0.02, capped=False) == later - 0.04


def test_a_batch_that_may_have_been_capped_ends_at_its_return() -> None:
    assert last_change(set(), returned=1.06, step=0.005, capped=True) == 1.06


def test_steps_are_short_while_changes_wait() -> None:
    assert watch_steps(0.01) == (2, 1)
    assert watch_steps(0.05) == (20, 5)
    assert watch_steps(1.0) == (20, 20)
