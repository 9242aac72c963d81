"""Would importing loguru and dependency-injector after the spawns meet the launch target?

An experiment behind docs/benchmarks.md ("Why launch misses"), not a feature. It launches
50 children that each write a marker (compare.py's launch scenario), alternating:

- ``bare Popen``: compare.py's bare launcher;
- ``processman``: ``processman run`` as installed from this checkout;
- ``deferred imports``: the same venv, but a script that imports only anyio, the Linux
  spawner and the domain (the ``processman`` package's own ``__init__``, which imports
  loguru and the manager, is skipped), spawns the 50 children with the spawner
  ``processman run`` uses, and only then imports loguru, dependency-injector and the rest
  of processman. No config file, container or runner: a lower bound for what deferring
  those imports could give;
- ``deferred, imports at nice 19``: the same, with the deferred imports in a thread at
  nice 19, so that the children's start-up would come first (it does not much: each
  child calls ``setsid``, and with autogroup scheduling a nice value counts only inside
  its own session's group).

    .venv/bin/python benchmarks/deferred_imports.py [--runs 8]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import textwrap
from pathlib import Path

from compare import Tool, bare, child_argv, install_processman, measure, processman

N = 50
DEFERRED = textwrap.dedent(
    """
    import importlib.util, os, signal, sys, threading, types

    # skip processman/__init__.py (it imports loguru and the manager): the experiment
    found = importlib.util.find_spec("processman")
    package = types.ModuleType("processman")
    package.__path__ = list(found.submodule_search_locations)
    sys.modules["processman"] = package

    import anyio
    from processman.adapters.spawn_linux import LinuxSpawner
    from processman.domain.ports import SpawnRequest

    async def main(argv):
        spawner = LinuxSpawner(spawn_from_leaf=True, subreaper=True)
        env = dict(os.environ)
        handles = [
            await spawner.spawn(SpawnRequest(process_id=f"c{i}", argv=argv, cwd="/", env=env))
            for i in range(__N__)
        ]
        for name in [m for m in sys.modules if m == "processman" or m.startswith("processman.")]:
            del sys.modules[name]
        def imports():
            if __NICE__:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
            import loguru, processman.__main__
            processman.__main__.import_dependency_injector()
            import processman.app.cli  # the deferred part
        thread = threading.Thread(target=imports)
        thread.start()
        thread.join()
        with anyio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                break
        for handle in handles:
            await handle.stop("SIGTERM", 2)
        await spawner.aclose()

    anyio.run(main, tuple(sys.argv[1:]))
    """
)


def deferred(venv: Path, *, nice: bool = False) -> Tool:
    def command(work: Path, n: int) -> list[str]:
        script = DEFERRED.replace("__N__", str(n)).replace("__NICE__", str(nice))
        (work / "deferred.py").write_text(script)
        return [str(venv / "bin" / "python"), str(work / "deferred.py"), *child_argv(work)]

    return Tool("deferred, imports at nice 19" if nice else "deferred imports", command)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pm-deferred-"))
    try:
        venv = install_processman(root)
        tools = [
            Tool("bare Popen", bare),
            Tool("processman", processman(venv)),
            deferred(venv),
            deferred(venv, nice=True),
        ]
        launches: dict[str, list[float]] = {tool.name: [] for tool in tools}
        for _ in range(args.runs):
            for tool in tools:
                launches[tool.name].append(measure(tool, N, 0.0, root)["launch_s"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    floor = statistics.median(launches["bare Popen"])
    print(f"Launch {N} children, median (min–max) of {args.runs}; ratio to bare Popen:")
    for name, values in launches.items():
        median = statistics.median(values)
        print(
            f"- {name}: {median:.3f} s ({min(values):.3f}–{max(values):.3f}), "
            f"{median / floor:.2f} ×"
        )


if __name__ == "__main__":
    if not sys.platform.startswith("linux"):
        raise SystemExit("the experiment uses the Linux spawner")
    main()
