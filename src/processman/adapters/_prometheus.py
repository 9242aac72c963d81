"""``GET /metrics`` (SPEC §11): the Prometheus text format, version 0.0.4.

The processes' families are written here, one precomputed label set per process:
prometheus_client's collector API and ``generate_latest`` took 134 ms for the 8,000
samples of 500 processes (each label name validated and escaped again for each sample),
and a scrape must answer within 50 ms. The manager's own ``process_*`` metrics are
prometheus_client's (``ProcessCollector``), and the tests read the whole answer with
prometheus_client's parser.

Imported on the first scrape only: a manager that is never scraped never loads it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.exposition import generate_latest

from processman.domain.model import Status

if TYPE_CHECKING:
    from collections.abc import Callable

    from processman.domain.model import ProcessMetrics

#: the text format of SPEC §11
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: (name, type, help) of each family, in the order written
FAMILIES = (
    ("processman_process_up", "gauge", "1 while running"),
    ("processman_process_ready", "gauge", "1 while running and ready (SPEC 8)"),
    ("processman_process_status", "gauge", "1 for the current status, 0 for the others"),
    ("processman_process_restarts_total", "counter", "restarts since the manager began"),
    (
        "processman_process_start_time_seconds",
        "gauge",
        "start of the running instance, Unix time",
    ),
    (
        "processman_process_cpu_seconds_total",
        "counter",
        "CPU time of the running instance's whole tree",
    ),
    (
        "processman_process_resident_memory_bytes",
        "gauge",
        "resident memory of the running instance's whole tree",
    ),
    ("processman_log_lines_total", "counter", "lines the process has written, per stream"),
)
#: the status family's label and value per status, for each current status
_STATUS_SUFFIXES = {
    current: [f',status="{each.value}"}} {1 if each is current else 0}' for each in Status]
    for current in Status
}


def _label(value: str) -> str:
    """A label value as the text format quotes it."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


class Exposition:
    """Writes one scrape: the processes' families, then the manager's own."""

    def __init__(self, read: Callable[[], list[ProcessMetrics]]) -> None:
        self._read = read
        self._own = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self._own)

    def render(self) -> bytes:
        lines: dict[str, list[str]] = {name: [] for name, _, _ in FAMILIES}
        up, ready, status, restarts, started, cpu, memory, log_lines = lines.values()
        for metrics in self._read():
            s = metrics.status
            labels = f'id="{_label(s.id)}",group="{_label(s.group or s.id)}"'
            running = s.status is Status.RUNNING
            up.append(f"{{{labels}}} {1 if running else 0}")
            ready.append(f"{{{labels}}} {1 if s.ready else 0}")
            prefix = "{" + labels
            status.extend(prefix + suffix for suffix in _STATUS_SUFFIXES[s.status])
            restarts.append(f"{{{labels}}} {s.restart_count}")
            if running and s.start_time is not None:
                started.append(f"{{{labels}}} {_number(s.start_time.timestamp())}")
            if running and metrics.cpu_seconds is not None:
                cpu.append(f"{{{labels}}} {_number(metrics.cpu_seconds)}")
            if running and s.memory_bytes is not None:
                memory.append(f"{{{labels}}} {s.memory_bytes}")
            for stream, count in sorted(metrics.log_lines.items()):
                log_lines.append(f'{{{labels},stream="{_label(stream)}"}} {count}')
        out = []
        for name, kind, text in FAMILIES:
            out.append(f"# HELP {name} {text}\n# TYPE {name} {kind}\n")
            out.extend(f"{name}{sample}\n" for sample in lines[name])
        return "".join(out).encode() + generate_latest(self._own)


__all__ = ["CONTENT_TYPE", "FAMILIES", "Exposition"]
