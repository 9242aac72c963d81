"""A scrape of ``/metrics`` with 500 running processes (SPEC §11: under 50 ms).

Each scrape is a fresh one (the one-second cache has run out): every process's tree is
measured anew. Ratio: against ``GET /api/processes`` of the same manager, also fresh, and
the cached second scrape; the server is the API of ``processman run`` (uvicorn on
127.0.0.1, on the socket ``run`` binds), the client httpx (which asks for gzip, as
Prometheus does).

    .venv/bin/python benchmarks/metrics_scrape.py [--processes 500] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import anyio
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from processman import ProcessManager  # noqa: E402
from processman.adapters._prometheus import FAMILIES, Exposition  # noqa: E402
from processman.adapters.http import ApiServer, create_app  # noqa: E402
from processman.app.cli import _bind  # noqa: E402
from processman.domain.model import (  # noqa: E402
    Config,
    LogSettings,
    ProcessMetrics,
    ProcessSpec,
    Status,
)


async def timed(client: httpx.AsyncClient, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    answer = await client.get(path)
    answer.raise_for_status()
    return time.perf_counter() - started, len(answer.content)


def render_with_prometheus_client(metrics: list[ProcessMetrics]) -> bytes:
    """The same families through prometheus_client's collector API and generate_latest
    (the first design, kept here to show why it was left)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.exposition import generate_latest

    class Collector:
        def describe(self) -> list[object]:
            return []

        def collect(self):  # type: ignore[no-untyped-def]
            labels = ["id", "group"]
            families = {
                name: (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                    name.removesuffix("_total"),
                    text,
                    labels=labels
                    + (["status"] if name.endswith("_status") else [])
                    + (["stream"] if name.startswith("processman_log") else []),
                )
                for name, kind, text in FAMILIES
            }
            for m in metrics:
                s, ids = m.status, [m.status.id, m.status.group or m.status.id]
                running = s.status is Status.RUNNING
                families["processman_process_up"].add_metric(ids, int(running))
                families["processman_process_ready"].add_metric(ids, int(s.ready))
                for each in Status:
                    families["processman_process_status"].add_metric(
                        [*ids, each.value], int(each is s.status)
                    )
                families["processman_process_restarts_total"].add_metric(ids, s.restart_count)
                if running and s.start_time is not None:
                    families["processman_process_start_time_seconds"].add_metric(
                        ids, s.start_time.timestamp()
                    )
                if running and m.cpu_seconds is not None:
                    families["processman_process_cpu_seconds_total"].add_metric(ids, m.cpu_seconds)
                if running and s.memory_bytes is not None:
                    families["processman_process_resident_memory_bytes"].add_metric(
                        ids, s.memory_bytes
                    )
                for stream, count in m.log_lines.items():
                    families["processman_log_lines_total"].add_metric([*ids, stream], count)
            yield from families.values()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())  # type: ignore[arg-type]
    return generate_latest(registry)


async def main(processes: int, runs: int) -> None:
    specs = tuple(
        ProcessSpec(id=f"p{i}", cwd="/", command=("sleep", "3600"), stop_timeout=2.0)
        for i in range(processes)
    )
    config = Config(processes=specs, logs=LogSettings(console=False))
    sock = _bind("127.0.0.1", 0)  # the API socket of `processman run --api`
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    fresh, cached, listing, size = [], [], [], 0
    async with ProcessManager(config) as m, anyio.create_task_group() as tg:
        server = ApiServer(create_app(m))
        await tg.start(server.serve, sock)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            await timed(client, "/metrics")  # prometheus_client is imported here
            for _ in range(runs):
                await anyio.sleep(1.1)  # past the cache: every tree measured again
                seconds, size = await timed(client, "/metrics")
                fresh.append(seconds)
                cached.append((await timed(client, "/metrics"))[0])
                await anyio.sleep(1.1)
                listing.append((await timed(client, "/api/processes"))[0])
            cached_metrics = m.metrics()
            ours, theirs = [], []
            exposition = Exposition(lambda: cached_metrics)
            for _ in range(runs):
                started = time.perf_counter()
                exposition.render()
                ours.append(time.perf_counter() - started)
                started = time.perf_counter()
                render_with_prometheus_client(cached_metrics)
                theirs.append(time.perf_counter() - started)
        server.stop()
    sock.close()
    scrape, again, listed = (statistics.median(x) for x in (fresh, cached, listing))
    print("| measure | figure | target |")
    print("|---|---|---|")
    print(
        f"| `GET /metrics`, {processes} running processes, measured anew "
        f"| {scrape * 1000:.1f} ms ({size // 1024} KiB) | < 50 ms |"
    )
    print(f"| the same within the second (cached readings) | {again * 1000:.1f} ms | |")
    print(
        f"| `GET /api/processes`, measured anew | {listed * 1000:.1f} ms "
        f"(/metrics: {scrape / listed:.2f} x) | |"
    )
    mine, library = statistics.median(ours), statistics.median(theirs)
    print(
        f"| the text alone: processman's writer / prometheus_client's collector and "
        f"generate_latest | {mine * 1000:.1f} / {library * 1000:.1f} ms "
        f"({library / mine:.1f} x) | |"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--processes", type=int, default=500)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    anyio.run(main, args.processes, args.runs)
