"""``processman export`` (SPEC §12), run as the real command: systemd units checked by
``systemd-analyze verify``, Kubernetes documents by ``kubernetes-validate --strict``,
and a Procfile run back through processman's own loader and a real shell."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import yaml

from processman.adapters.config import load_config

if TYPE_CHECKING:
    from pathlib import Path

#: systemd 252 (Debian 12) does not know these two keys of systemd 254; SPEC §12 allows them
NEWER_KEYS = ("RestartSteps", "RestartMaxDelaySec")


def export(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processman", "export", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def project(tmp_path: Path, body: str) -> Path:
    """A config in ``tmp_path`` beside a real script and an env file."""
    (tmp_path / "app.py").write_text("import time\ntime.sleep(1000)\n")
    (tmp_path / "app.env").write_text("DATABASE_URL=postgres://db/app\nSHARED=from-file\n")
    config = tmp_path / "processman.toml"
    config.write_text(body.replace("PYTHON", json.dumps(sys.executable)))
    return config


#: One config with each thing §12 maps: a plain process, replicas with a port, a notify
#: process with a watchdog, sockets, dependencies (ready, started, completed), envFile
#: and maxMemory.
EVERYTHING = """
[[processes]]
id = "plain"
command = [PYTHON, "app.py", "--name", "100% ${PROCESSMAN_ID}", "a$$b"]
restart = "on-failure"
backoff = "2s"
maxBackoff = "16s"
maxRetries = 3
healthyAfter = "5s"
stopSignal = "INT"
stopTimeout = "7s"
maxMemory = "256 MiB"
envFile = "app.env"
env = { GREETING = "hello world", SHARED = "from-env" }

[[processes]]
id = "web"
command = [PYTHON, "app.py", "--port", "${PORT}", "--id", "${PROCESSMAN_ID}"]
replicas = 2
port = 8000
env = { URL = "http://127.0.0.1:${PORT}/" }
dependsOn = { notifier = "ready", migrate = "completed" }
ready = { exec = "true" }

[[processes]]
id = "notifier"
script = "app.py"
ready = { notify = true }
readyTimeout = "30s"
health = { watchdog = "5s" }

[[processes]]
id = "sock"
command = [PYTHON, "app.py"]
sockets = ["127.0.0.1:18080", "unix:run/app.sock"]
dependsOn = { "web-1" = "started" }

[[processes]]
id = "migrate"
command = [PYTHON, "-c", "print('migrated')"]
restart = "never"
"""


@pytest.fixture
def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian's systemd package has it)")
    return found


def verify(systemd_analyze: str, out: Path, instances: list[str]) -> list[str]:
    """Every unit file of ``out`` and the named instances of its templates through
    ``systemd-analyze verify``; the lines it complains with."""
    units = sorted(str(p) for p in out.iterdir() if p.is_file())
    result = subprocess.run(
        [systemd_analyze, "verify", *units, *(str(out / name) for name in instances)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=out,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 0, result.stderr
    return lines


def test_systemd_units_verify_and_map_every_key(tmp_path: Path, systemd_analyze: str) -> None:
    config = project(tmp_path, EVERYTHING)
    out = tmp_path / "units"
    result = export("systemd", str(config), "-o", str(out))
    assert result.returncode == 0, result.stderr
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert names == [
        "processman-migrate.service",
        "processman-notifier.service",
        "processman-plain.service",
        "processman-sock.service",
        "processman-sock.socket",
        "processman-web@.service",
        "processman-web@0.service.d/processman.conf",
        "processman-web@1.service.d/processman.conf",
        "processman.target",
    ]
    complaints = verify(
        systemd_analyze, out, ["processman-web@0.service", "processman-web@1.service"]
    )
    unexpected = [line for line in complaints if not any(f"'{key}'" in line for key in NEWER_KEYS)]
    assert unexpected == []

    plain = (out / "processman-plain.service").read_text()
    assert f'ExecStart={sys.executable} app.py --name "100%% plain" "a$$b"' in plain
    for line in (
        "Type=exec",
        f"WorkingDirectory={tmp_path}",
        f"EnvironmentFile={tmp_path}/app.env",
        'Environment="GREETING=hello world"',
        'Environment="PROCESSMAN_ID=plain"',
        "Restart=on-failure",
        "RestartSec=2s",
        "RestartSteps=3",  # 2s, 4s, 8s, 16s
        "RestartMaxDelaySec=16s",
        "StartLimitBurst=4",  # maxRetries + 1 starts
        "StartLimitIntervalSec=34s",  # 4 runs of healthyAfter 5s, then 2s + 4s + 8s
        "KillMode=control-group",
        "KillSignal=SIGINT",
        "TimeoutStopSec=7s",
        "MemoryMax=268435456",
        "PartOf=processman.target",
    ):
        assert line in plain.splitlines(), line
    assert "DATABASE_URL" not in plain  # the env file is read by systemd, not copied
    assert "KillMode=process" not in plain

    web = (out / "processman-web@.service").read_text()
    assert f"ExecStart={sys.executable} app.py --port ${{PORT}} --id web-%i\n" in web, web
    assert 'Environment="PROCESSMAN_ID=web-%i"' in web
    assert 'Environment="PROCESSMAN_REPLICA=%i"' in web
    assert "Requires=processman-notifier.service\n" in web
    assert "Wants=processman-migrate.service\n" in web
    assert "After=processman-notifier.service processman-migrate.service\n" in web
    assert 'ExecStartPost=/bin/sh -c "until true; do sleep 1; done"' in web
    drop_in = (out / "processman-web@1.service.d/processman.conf").read_text()
    assert 'Environment="PORT=8001"' in drop_in
    assert 'Environment="URL=http://127.0.0.1:8001/"' in drop_in

    notifier = (out / "processman-notifier.service").read_text()
    for line in ("Type=notify", "NotifyAccess=all", "WatchdogSec=5s", "TimeoutStartSec=30s"):
        assert line in notifier.splitlines(), line
    assert 'Environment="PYTHONUNBUFFERED=1"' in notifier

    sock = (out / "processman-sock.service").read_text()
    assert "Sockets=processman-sock.socket" in sock
    assert "Requires=processman-sock.socket processman-web@1.service" in sock
    socket_unit = (out / "processman-sock.socket").read_text()
    assert "ListenStream=127.0.0.1:18080" in socket_unit
    assert f"ListenStream={tmp_path}/run/app.sock" in socket_unit

    migrate = (out / "processman-migrate.service").read_text()
    for line in ("Type=oneshot", "RemainAfterExit=yes", "Restart=no"):
        assert line in migrate.splitlines(), line

    target = (out / "processman.target").read_text()
    assert (
        "Wants=processman-plain.service processman-web@0.service processman-web@1.service "
        "processman-notifier.service processman-sock.service processman-migrate.service"
    ) in target
    warnings = result.stderr
    assert "plain: processes[0].env.SHARED: also set by envFile" in warnings
    assert "sock: processes[3].sockets: one systemd socket unit" in warnings


def test_the_exporting_shell_never_leaks_and_what_it_gave_is_named(tmp_path: Path) -> None:
    config = project(
        tmp_path,
        """
[[processes]]
id = "api"
command = [PYTHON, "app.py", "--db", "${DB_HOST}", "--token=${PROCESSMAN_TOKEN}"]
env = { PROCESSMAN_TOKEN = "${PROCESSMAN_TOKEN}", MODE = "${MODE:-prod}" }
""",
    )
    env = {
        **os.environ,
        "DB_HOST": "db.internal",
        "SHELL_ONLY_SECRET": "do-not-leak-1234",
        "PROCESSMAN_TOKEN": "token-5678",
    }
    for kind, extra in (("systemd", []), ("kubernetes", ["--image", "app:1"]), ("procfile", [])):
        out = tmp_path / kind
        result = export(kind, str(config), "-o", str(out), *extra, env=env)
        assert result.returncode == 0, result.stderr
        texts = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
        assert "db.internal" in texts
        assert "do-not-leak-1234" not in texts
        assert "token-5678" not in texts
        assert "PROCESSMAN_TOKEN" not in texts
        assert "--token=" in texts  # the template that asked for it got nothing
        assert "api: processes[0].command: ${DB_HOST} was taken from this shell's" in result.stderr
        assert "${MODE}" not in result.stderr  # its default was used: nothing came in
        assert "api: processes[0].env.PROCESSMAN_TOKEN: left out" in result.stderr
        assert "api: processes[0].command: ${PROCESSMAN_TOKEN} is written empty" in result.stderr


def test_kubernetes_documents_validate_and_map(tmp_path: Path) -> None:
    config = project(
        tmp_path,
        EVERYTHING
        + """
[[processes]]
id = "Api_Server"
command = [PYTHON, "app.py"]
port = 9000
ready = { http = "http://127.0.0.1:9000/ready?deep=1", period = "2s", timeout = "500ms", initialDelay = "1s" }
readyTimeout = "20s"
health = { tcp = "127.0.0.1:9000", period = "10s", failures = 4 }
dependsOn = ["web"]

[[processes]]
id = "logs"
command = [PYTHON, "app.py"]
ready = { logLine = "listening" }
""",
    )
    out = tmp_path / "k8s"
    result = export("kubernetes", str(config), "--image", "ghcr.io/me/app:1.0", "-o", str(out))
    assert result.returncode == 0, result.stderr
    manifest = out / "kubernetes.yaml"
    printed = export("kubernetes", str(config), "--image", "ghcr.io/me/app:1.0")
    assert printed.returncode == 0 and printed.stdout == manifest.read_text()  # without -o
    validated = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", str(manifest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
    documents = list(yaml.safe_load_all(manifest.read_text()))
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    web = by_name["Deployment", "web"]["spec"]
    assert web["replicas"] == 2
    container = web["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/me/app:1.0"
    assert container["command"] == [
        sys.executable,
        "app.py",
        "--port",
        "8000",
        "--id",
        "$(PROCESSMAN_ID)",
    ]
    assert container["workingDir"] == str(tmp_path)
    assert {
        "name": "PROCESSMAN_ID",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    } in container["env"]
    assert container["readinessProbe"]["exec"] == {"command": ["true"]}
    assert web["template"]["spec"]["terminationGracePeriodSeconds"] == 10
    # notifier has no Service to wait for, and migrate would be a Job's
    assert "initContainers" not in web["template"]["spec"]
    assert "web: processes[1].dependsOn.notifier: notifier has no Service" in result.stderr
    assert (
        "web: processes[1].dependsOn.migrate: Kubernetes cannot wait for a pod to complete"
        in result.stderr
    )

    plain = by_name["Deployment", "plain"]["spec"]["template"]["spec"]
    assert plain["terminationGracePeriodSeconds"] == 7
    assert plain["containers"][0]["resources"] == {"limits": {"memory": "256Mi"}}
    assert plain["containers"][0]["envFrom"] == [{"secretRef": {"name": "plain-env"}}]
    assert (
        "plain: processes[0].stopSignal: Kubernetes stops a container with SIGTERM" in result.stderr
    )

    api = by_name["Deployment", "api-server"]["spec"]["template"]["spec"]
    probe = api["containers"][0]["readinessProbe"]
    assert probe == {
        "httpGet": {"path": "/ready?deep=1", "port": 9000, "scheme": "HTTP"},
        "periodSeconds": 2,
        "timeoutSeconds": 1,
        "initialDelaySeconds": 1,
    }
    assert api["containers"][0]["startupProbe"]["failureThreshold"] == 10  # 20s / 2s
    assert api["containers"][0]["livenessProbe"] == {
        "tcpSocket": {"port": 9000},
        "periodSeconds": 10,
        "timeoutSeconds": 1,
        "initialDelaySeconds": 0,
        "failureThreshold": 4,
    }
    wait = api["initContainers"][0]
    assert wait["name"] == "wait-for-web"
    assert wait["command"][-1] == "until nc -z -w 1 web 8000; do sleep 1; done"
    service = by_name["Service", "api-server"]["spec"]
    assert service["ports"] == [
        {"name": "tcp-9000", "port": 9000, "targetPort": 9000, "protocol": "TCP"}
    ]
    assert ("Service", "sock") in by_name  # a TCP socket gets a Service too
    assert "Api_Server: processes[5].id: named 'api-server' in Kubernetes" in result.stderr
    assert "logs: processes[6].ready.logLine: Kubernetes has no logLine probe" in result.stderr
    assert "notifier: processes[2].ready.notify: Kubernetes has no notify probe" in result.stderr
    assert (
        "notifier: processes[2].health.watchdog: Kubernetes has no watchdog probe" in result.stderr
    )
    assert "sock: processes[3].sockets: Kubernetes cannot hand a listening socket" in result.stderr
    assert "migrate: processes[4].restart: never: a Deployment always restarts" in result.stderr

    # the validator can fail: a misspelt key is refused
    broken = tmp_path / "broken.yaml"
    documents[0]["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    broken.write_text(yaml.safe_dump(documents[0]))
    refused = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0


def test_a_procfile_round_trips_to_the_same_argv(tmp_path: Path) -> None:
    (tmp_path / "argv.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    config = project(
        tmp_path,
        """
[[processes]]
id = "quoted"
command = [PYTHON, "argv.py", "two words", "it's", "$$HOME", "a;b", "*", ""]

[[processes]]
id = "script"
script = "argv.py"
interpreter = PYTHON
args = ["--flag", "x y"]
maxRetries = 2
""",
    )
    result = export("procfile", str(config))
    assert result.returncode == 0, result.stderr
    assert "script: processes[1].maxRetries: a Procfile cannot hold it" in result.stderr
    procfile = tmp_path / "Procfile"
    procfile.write_text(result.stdout)
    loaded = load_config(procfile)
    expected = {
        "quoted": ["two words", "it's", "$HOME", "a;b", "*", ""],
        "script": ["--flag", "x y"],
    }
    assert [spec.id for spec in loaded.processes] == list(expected)
    for spec in loaded.processes:
        assert spec.command is not None and spec.command[:2] == ("/bin/sh", "-c")
        ran = subprocess.run(
            spec.command, capture_output=True, text=True, cwd=tmp_path, timeout=30, check=True
        )
        assert json.loads(ran.stdout) == expected[spec.id]


def test_bad_input_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[processes]]\nid = "x"\ncommand = "true"\nbackof = "1s"\n')
    result = export("systemd", str(bad), "-o", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"processman: {bad}: processes[0].backof: unknown key 'backof' (did you mean 'backoff'?)"
    )
    assert not (tmp_path / "out").exists()

    good = project(tmp_path, '[[processes]]\nid = "x"\ncommand = [PYTHON, "app.py"]\n')
    missing_dir = export("systemd", str(good))
    assert missing_dir.returncode == 2
    assert "-o DIR" in missing_dir.stderr
    no_image = export("kubernetes", str(good))
    assert no_image.returncode == 2
    assert "--image IMAGE" in no_image.stderr

    out = tmp_path / "out"
    assert export("procfile", str(good), "-o", str(out)).returncode == 0
    before = (out / "Procfile").read_text()
    (out / "Procfile").write_text("mine\n")
    again = export("procfile", str(good), "-o", str(out))
    assert again.returncode == 1
    assert again.stderr.strip() == (
        f"processman: {out}/Procfile exists already (give --force to overwrite)"
    )
    assert (out / "Procfile").read_text() == "mine\n"
    forced = export("procfile", str(good), "-o", str(out), "--force")
    assert forced.returncode == 0
    assert (out / "Procfile").read_text() == before

    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        refused = export("systemd", str(good), "-o", str(locked / "units"))
        assert refused.returncode == 1
        assert len(refused.stderr.strip().splitlines()) == 1
        assert "Permission denied" in refused.stderr
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    not_a_dir = export("systemd", str(good), "-o", str(a_file))
    assert not_a_dir.returncode == 1
    assert len(not_a_dir.stderr.strip().splitlines()) == 1, not_a_dir.stderr
    assert "Traceback" not in not_a_dir.stderr
    assert re.search(r"cannot write .*a-file", not_a_dir.stderr)


ONE_EACH = {
    "plain": '[[processes]]\nid = "a"\ncommand = [PYTHON, "app.py"]\n',
    "replicas": '[[processes]]\nid = "w"\ncommand = [PYTHON, "app.py", "${PORT}"]\nreplicas = 3\nport = 9100\n',
    "notify and watchdog": (
        '[[processes]]\nid = "n"\nscript = "app.py"\nready = { notify = true }\n'
        'health = { watchdog = "2s" }\n'
    ),
    "sockets": '[[processes]]\nid = "s"\ncommand = [PYTHON, "app.py"]\nsockets = ["[::1]:9200", "unix:/tmp/processman-export-test.sock"]\n',
    "dependencies": (
        '[[processes]]\nid = "m"\ncommand = [PYTHON, "-c", "pass"]\nrestart = "never"\n'
        '[[processes]]\nid = "d"\ncommand = [PYTHON, "app.py"]\nready = { exec = "true" }\n'
        '[[processes]]\nid = "a"\ncommand = [PYTHON, "app.py"]\n'
        'dependsOn = { m = "succeeded", d = "ready" }\n'
    ),
    "envFile": '[[processes]]\nid = "e"\ncommand = [PYTHON, "app.py"]\nenvFile = "app.env"\n',
    "maxMemory": '[[processes]]\nid = "m"\ncommand = [PYTHON, "app.py"]\nmaxMemory = "1.5 GiB"\n',
}


@pytest.mark.parametrize("body", ONE_EACH.values(), ids=list(ONE_EACH))
def test_each_kind_of_config_verifies(tmp_path: Path, systemd_analyze: str, body: str) -> None:
    config = project(tmp_path, body)
    out = tmp_path / "units"
    result = export("systemd", str(config), "-o", str(out))
    assert result.returncode == 0, result.stderr
    templates = [p.name for p in out.glob("*@.service")]
    instances = [name.replace("@.", f"@{index}.") for name in templates for index in range(3)]
    complaints = verify(systemd_analyze, out, instances)
    assert [c for c in complaints if not any(f"'{k}'" in c for k in NEWER_KEYS)] == []


def test_the_wait_of_a_tcp_ready_probe_returns_once_the_port_listens(tmp_path: Path) -> None:
    import socket
    import threading
    import time

    from processman.domain.export import _wait_program
    from processman.domain.model import Probe, ProbeKind

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        probe = Probe(kind=ProbeKind.TCP, target=f"127.0.0.1:{port}", period=0.05)
        waiter = subprocess.Popen([sys.executable, "-c", _wait_program(probe)])
        try:
            time.sleep(0.5)
            assert waiter.poll() is None  # nothing listens yet: it keeps trying
            threading.Timer(0, sock.listen).start()
            assert waiter.wait(timeout=10) == 0
        finally:
            if waiter.poll() is None:
                waiter.kill()
                waiter.wait()
