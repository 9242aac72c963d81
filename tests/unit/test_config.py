"""Config files: every format, discovery, templates, and a table of bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from processman.adapters.config import DISCOVERY_ORDER, discover, load_config
from processman.domain.errors import ConfigError
from processman.domain.model import Condition, Probe, ProbeKind, RestartPolicy

ENV = {"HOME": "/home/u", "PORT": "8000", "PATH": "/usr/bin"}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


FULL_TOML = """
[[processes]]
id = "worker"
script = "worker.py"
args = ["--port", "${PORT}"]
cwd = "app"
env = { GREETING = "hello ${WHO:-world}", FROM_FILE = "${SECRET}", ID = "${PROCESSMAN_ID}" }
envFile = ".env"
interpreter = "auto"
restart = "on-failure"
maxRetries = 3
backoff = "250ms"
maxBackoff = "1m30s"
healthyAfter = "5s"
stopSignal = "INT"
stopTimeout = "2s"
autostart = false
devMode = true
watchIgnore = ["*.tmp"]
watchDebounce = "10ms"

[[processes]]
id = "web"
command = "node server.js --flag 'two words' $$HOME"

[api]
listen = "0.0.0.0:9876"
token = "${HOME}"

[logs]
dir = "logs"
rotation = "1 MiB"
retention = 2
bufferLines = 50
console = false
"""


def test_full_toml(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / ".env").write_text("SECRET=s3cret\nPORT=9000\n")
    config = load_config(write(tmp_path, "processman.toml", FULL_TOML), environ=ENV)
    worker, web = config.processes
    app = str(tmp_path / "app")
    assert worker.cwd == app
    assert worker.script == f"{app}/worker.py"
    assert worker.args == ("--port", "9000")  # envFile wins over the manager's environment
    assert worker.env == {
        "SECRET": "s3cret",
        "PORT": "9000",
        "GREETING": "hello world",
        "FROM_FILE": "s3cret",
        "ID": "worker",
    }
    assert worker.restart is RestartPolicy.ON_FAILURE
    assert (worker.max_retries, worker.backoff, worker.max_backoff) == (3, 0.25, 90.0)
    assert (worker.healthy_after, worker.stop_signal, worker.stop_timeout) == (5.0, "SIGINT", 2.0)
    assert (worker.autostart, worker.dev_mode, worker.watch_paths) == (False, True, (app,))
    assert (worker.watch_ignore, worker.watch_debounce) == (("*.tmp",), 0.01)
    assert web.command == ("node", "server.js", "--flag", "two words", "$HOME")
    assert web.cwd == str(tmp_path) and web.restart is RestartPolicy.ALWAYS
    assert (web.backoff, web.max_backoff, web.healthy_after, web.stop_timeout) == (
        1.0,
        30.0,
        10.0,
        10.0,
    )
    assert config.api.listen == "0.0.0.0:9876" and config.api.token == "/home/u"
    assert config.api.base_url == "http://127.0.0.1:9876"
    assert config.logs.dir == str(tmp_path / "logs")
    assert (config.logs.rotation_bytes, config.logs.retention, config.logs.buffer_lines) == (
        1048576,
        2,
        50,
    )
    assert config.logs.console is False


def test_yaml_and_json_match_toml(tmp_path: Path) -> None:
    yaml_text = "processes:\n  - id: a\n    command: [echo, hi]\n    backoff: 0\n"
    json_text = json.dumps({"processes": [{"id": "a", "command": ["echo", "hi"], "backoff": 0}]})
    toml_text = '[[processes]]\nid = "a"\ncommand = ["echo", "hi"]\nbackoff = 0\n'
    configs = [
        load_config(write(tmp_path, name, text), environ=ENV).processes
        for name, text in [
            ("c.yaml", yaml_text),
            ("c.yml", yaml_text),
            ("c.json", json_text),
            ("c.toml", toml_text),
        ]
    ]
    assert all(c == configs[0] for c in configs)
    assert configs[0][0].backoff == 0.0


def test_legacy_pb_processes_json_loads_unchanged(tmp_path: Path) -> None:
    # As Go's encoding/json writes the original plugin's ProcessConfig: cwd and
    # interpreter always present (maybe ""), the omitempty fields left out.
    legacy = [
        {
            "id": "ai-worker",
            "script": "worker.py",
            "args": ["--model", "small"],
            "cwd": "",
            "env": {"MODE": "dev"},
            "interpreter": "",
            "maxRetries": 5,
            "backoff": "2s",
            "devMode": True,
            "watchPaths": ["./"],
        },
        {"id": "bridge", "command": "node bridge.js", "cwd": "", "interpreter": ""},
        {"id": "py", "script": "x.py", "cwd": "", "interpreter": "auto"},
    ]
    config = load_config(write(tmp_path, "pb_processes.json", json.dumps(legacy)), environ=ENV)
    worker, bridge, py = config.processes
    assert worker.cwd == str(tmp_path) and worker.interpreter is None
    assert (worker.max_retries, worker.backoff, worker.dev_mode) == (5, 2.0, True)
    assert worker.watch_paths == (str(tmp_path),)
    assert bridge.command == ("node", "bridge.js") and bridge.interpreter is None
    assert py.interpreter == "auto"


def test_legacy_nulls_and_empty_commands_are_unset(tmp_path: Path) -> None:
    # As other writers (Go without omitempty) write an unset slice, map or string
    legacy = [
        {
            "id": "w",
            "script": "worker.py",
            "command": "",
            "args": None,
            "env": None,
            "envFile": None,
            "cwd": None,
            "interpreter": None,
            "watchPaths": None,
            "watchIgnore": None,
            "maxRetries": None,
            "backoff": None,
            "devMode": None,
        },
        {"id": "b", "script": "", "command": "node bridge.js"},
    ]
    path = write(tmp_path, "pb_processes.json", json.dumps(legacy))
    worker, bridge = load_config(path, environ=ENV).processes
    assert worker.script == str(tmp_path / "worker.py") and worker.command is None
    assert (worker.args, worker.env, worker.cwd, worker.interpreter) == (
        (),
        {},
        str(tmp_path),
        None,
    )
    assert (worker.max_retries, worker.backoff, worker.dev_mode, worker.watch_paths) == (
        -1,
        1.0,
        False,
        (),
    )
    assert bridge.command == ("node", "bridge.js") and bridge.script is None


def test_procfile(tmp_path: Path) -> None:
    text = "# comment\n\nweb: python -m http.server $PORT && echo done\nworker:python worker.py\n"
    config = load_config(write(tmp_path, "Procfile", text), environ=ENV)
    assert [p.id for p in config.processes] == ["web", "worker"]
    assert config.processes[0].command == (
        "/bin/sh",
        "-c",
        "python -m http.server $PORT && echo done",
    )
    assert config.processes[1].cwd == str(tmp_path)
    # PORT as honcho gives it: the environment's PORT (8000 here), then 100 more each
    assert [p.env for p in config.processes] == [{"PORT": "8000"}, {"PORT": "8100"}]


def test_procfile_ports_start_at_5000_without_a_port_in_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "Procfile", "web: a\nworker: b\nclock: c\n")
    config = load_config(path, environ={"PATH": "/usr/bin"})
    assert [p.env["PORT"] for p in config.processes] == ["5000", "5100", "5200"]
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"PORT": "http"})
    assert str(info.value) == (f"{path}: PORT in the environment must be a port number, got 'http'")


def test_procfile_reads_the_dotenv_beside_it_as_honcho_does(tmp_path: Path) -> None:
    write(tmp_path, ".env", "DATABASE_URL=postgres://db/app\nPORT=7000\n")
    config = load_config(write(tmp_path, "Procfile", "web: a\nworker: b\n"), environ=ENV)
    # .env's PORT wins over the environment's (8000), as in honcho
    assert [p.env for p in config.processes] == [
        {"DATABASE_URL": "postgres://db/app", "PORT": "7000"},
        {"DATABASE_URL": "postgres://db/app", "PORT": "7100"},
    ]
    dotenv = write(tmp_path, ".env", "PORT=web\n")
    with pytest.raises(ConfigError, match="PORT in .env must be a port number, got 'web'"):
        load_config(tmp_path / "Procfile", environ=ENV)
    dotenv.write_bytes(b"A=\xff\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "Procfile", environ=ENV)
    assert str(info.value).startswith(f"{tmp_path / 'Procfile'}: {dotenv}: ")


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in reversed(DISCOVERY_ORDER):
        write(tmp_path, name, "x")
        assert discover(tmp_path).name == name
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="processman.toml"):
        load_config()  # the discovered processman.toml holds "x": invalid TOML


def test_nothing_to_discover(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config file found"):
        discover(tmp_path)


def test_command_path_resolves_against_cwd_and_templates(tmp_path: Path) -> None:
    text = '[[processes]]\nid = "a"\ncwd = "sub"\ncommand = ["./run", "${PROCESSMAN_ID}", "${PROCESSMAN_API}"]\n'
    (spec,) = load_config(write(tmp_path, "p.toml", text), environ={}).processes
    assert spec.command == (str(tmp_path / "sub" / "run"), "a", "")


P = '[[processes]]\nid = "a"\ncommand = "x"\n'  # a valid process to append keys to

BAD: list[tuple[str, str, str, str]] = [
    # (file name, content, field, part of the reason)
    ("p.toml", P + "colour = 1\n", "processes[0].colour", "unknown key"),
    ("p.toml", P + "maxRetry = 1\n", "processes[0].maxRetry", "did you mean 'maxRetries'"),
    ("p.toml", P + "max_retries = 1\n", "processes[0].max_retries", "unknown key"),
    ("p.toml", '[[processes]]\nid = "a"\ncommand = "x"\n[extra]\n', "extra", "unknown key"),
    ("p.toml", P + "[api]\nport = 1\n", "api.port", "unknown key"),
    ("p.toml", P + 'maxRetries = "3"\n', "processes[0].maxRetries", "Expected int"),
    ("p.toml", P + "maxRetries = -2\n", "processes[0].maxRetries", ">= -1"),
    ("p.toml", P + 'autostart = "yes"\n', "processes[0].autostart", "Expected bool"),
    # msgspec says env[...]: the key is found in the document
    (
        "p.toml",
        P + "env = { A = 1, BAD = [1] }\n",
        "processes[0].env.BAD",
        "expected a string, number or boolean, got an array",
    ),
    (
        "p.toml",
        P + "env = { BAD = { x = 1 } }\n",
        "processes[0].env.BAD",
        "expected a string, number or boolean, got a table",
    ),
    (
        "p.json",
        '{"processes": [{"id": "a", "command": "x", "env": {"N": null}}]}',
        "processes[0].env.N",
        "got null",
    ),
    ("p.toml", P + "[api]\nlistn = 1\n", "api.listn", "did you mean 'listen'"),
    ("p.toml", P + "[logs]\nbufferLine = 1\n", "logs.bufferLine", "did you mean 'bufferLines'"),
    ("p.toml", P + "[logs]\nretension = 1\n", "logs.retension", "did you mean 'retention'"),
    ("p.toml", P + "[log]\ndir = 'x'\n", "log", "did you mean 'logs'"),
    # null means unset only in the legacy array
    (
        "p.json",
        '{"processes": [{"id": "a", "command": "x", "args": null}]}',
        "processes[0].args",
        "got null",
    ),
    ("pb_processes.json", '[{"id": null, "command": "x"}]', "[0].id", "got null"),
    (
        "pb_processes.json",
        '[{"id": "a", "script": "", "command": ""}]',
        "[0]",
        "needs `script` or `command`",
    ),
    ("p.toml", P + 'args = "--x"\n', "processes[0].args", "Expected array"),
    ("p.toml", P + 'backoff = "1 second"\n', "processes[0].backoff", "invalid duration"),
    ("p.toml", P + 'stopTimeout = "99999999999h"\n', "processes[0].stopTimeout", "2562047h"),
    ("p.toml", P + "backoff = 5\n", "processes[0].backoff", "bare number"),
    ("p.toml", P + 'backoff = "-1s"\n', "processes[0].backoff", "negative"),
    ("p.toml", P + "stopTimeout = 1.5\n", "processes[0].stopTimeout", "Expected"),
    (
        "p.toml",
        P + 'backoff = "10s"\nmaxBackoff = "1s"\n',
        "processes[0].maxBackoff",
        "below backoff",
    ),
    ("p.toml", P + 'stopSignal = "SIGNOPE"\n', "processes[0].stopSignal", "unknown signal"),
    ("p.toml", P + 'stopSignal = "15"\n', "processes[0].stopSignal", "unknown signal"),
    ("p.toml", P + 'restart = "sometimes"\n', "processes[0].restart", "expected 'always'"),
    (
        "p.toml",
        P + '[[processes]]\nid = "a"\ncommand = "y"\n',
        "processes[1].id",
        "duplicate id 'a'",
    ),
    ("p.toml", '[[processes]]\nid = "-bad"\ncommand = "x"\n', "processes[0].id", "invalid id"),
    ("p.toml", '[[processes]]\nid = "has space"\ncommand = "x"\n', "processes[0].id", "invalid id"),
    (
        "p.toml",
        '[[processes]]\nid = "' + "a" * 65 + '"\ncommand = "x"\n',
        "processes[0].id",
        "invalid id",
    ),
    ("p.toml", '[[processes]]\ncommand = "x"\n', "processes[0].id", "required key 'id'"),
    (
        "p.toml",
        '[[processes]]\nid = "a"\nscript = "a.py"\ncommand = "x"\n',
        "processes[0].command",
        "not both",
    ),
    ("p.toml", '[[processes]]\nid = "a"\n', "processes[0]", "needs `script` or `command`"),
    ("p.toml", P + 'interpreter = "python3"\n', "processes[0].interpreter", "applies to `script`"),
    (
        "p.toml",
        '[[processes]]\nid = "a"\ncommand = "x ${NOPE}"\n',
        "processes[0].command",
        "${NOPE}",
    ),
    ("p.toml", P + 'env = { A = "${NOPE}" }\n', "processes[0].env.A", "${NOPE}"),
    ("p.toml", P + 'args = ["ok", "$NOPE"]\n', "processes[0].args[1]", "stray"),
    (
        "p.toml",
        '[[processes]]\nid = "a"\ncommand = "x \'unclosed"\n',
        "processes[0].command",
        "cannot split",
    ),
    ("p.toml", '[[processes]]\nid = "a"\ncommand = ""\n', "processes[0].command", "empty"),
    ("p.toml", '[[processes]]\nid = "a"\ncommand = []\n', "processes[0].command", "empty"),
    ("p.toml", P + 'envFile = "missing.env"\n', "processes[0].envFile", "cannot read"),
    ("p.toml", P + '[logs]\nrotation = "big"\n', "logs.rotation", "invalid size"),
    ("p.toml", P + 'env = { A = "x\\u0000y" }\n', "processes[0].env.A", "NUL character"),
    ("p.toml", P + 'env = { "A=B" = "x" }\n', "processes[0].env", "invalid variable name"),
    ("p.toml", P + 'args = ["a\\u0000"]\n', "processes[0].args[0]", "NUL character"),
    ("p.toml", P + '[api]\nlisten = "nohostport"\n', "api.listen", "HOST:PORT"),
    ("p.toml", P + '[api]\nlisten = "127.0.0.1:70000"\n', "api.listen", "out of range"),
    ("p.toml", "[[processes]\nid = 1\n", "", "invalid TOML"),
    ("p.toml", "", "", "empty"),
    ("p.toml", "  \n\n", "", "empty"),
    ("p.toml", 'processes = "x"\n', "processes", "Expected array"),
    ("p.toml", "[api]\n", "processes", "required key 'processes'"),
    ("p.yaml", "processes: [\n", "", "invalid YAML at line"),
    ("p.yaml", "- id: a\n  command: x\n", "", "expected an object"),
    ("p.yaml", "just a string\n", "", "expected an object"),
    (
        "p.yaml",
        "processes:\n  - id: a\n    command: x\n    backoff: [1]\n",
        "processes[0].backoff",
        "Expected",
    ),
    ("p.json", '{"processes": [', "", "invalid JSON at line 1"),
    ("p.json", "42", "", "expected an object"),
    (
        "p.json",
        '{"processes": [{"id": "a", "command": "x", "devmode": true}]}',
        "processes[0].devmode",
        "did you mean 'devMode'",
    ),
    (
        "pb_processes.json",
        '[{"id": "a", "command": "x"}, {"id": "b", "backoff": "1s"}]',
        "[1]",
        "needs",
    ),
    (
        "pb_processes.json",
        '[{"id": "a", "command": "x", "backoff": 3}]',
        "[0].backoff",
        "bare number",
    ),
    # each parser recurses per level: nesting past the recursion limit is a config error
    ("p.toml", "a = " + "[" * 5000 + "]" * 5000 + "\n", "", "nested too deeply"),
    ("p.json", '{"processes": ' + "[" * 100_000 + "]" * 100_000 + "}", "", "nested too deeply"),
    ("p.yaml", "a: " + "[" * 5000 + "]" * 5000 + "\n", "", "nested too deeply"),
    ("p.ini", "[x]\n", "", "unknown config format"),
    ("Procfile", "web python app.py\n", "line 1", "expected `name: command`"),
    ("Procfile", "web: a\nweb: b\n", "line 2", "duplicate id 'web'"),
    ("Procfile", "# only a comment\n", "", "no processes"),
    # SPEC §8: probes and dependencies
    (
        "p.toml",
        P + "ready = {}\n",
        "processes[0].ready",
        "no probe: give one of http, tcp, exec, logLine, notify",
    ),
    (
        "p.toml",
        P + "health = { period = '5s' }\n",
        "processes[0].health",
        "no probe: give one of http, tcp, exec, watchdog",
    ),
    (
        "p.toml",
        P + "ready = { http = 'http://x/', tcp = 'x:1' }\n",
        "processes[0].ready",
        "give one probe, not http and tcp",
    ),
    (
        "p.toml",
        P + "health = { logLine = 'up' }\n",
        "processes[0].health.logLine",
        "for ready only",
    ),
    ("p.toml", P + "health = { notify = true }\n", "processes[0].health.notify", "for ready only"),
    (
        "p.toml",
        P + "ready = { watchdog = '5s' }\n",
        "processes[0].ready.watchdog",
        "for health only",
    ),
    (
        "p.toml",
        P + "ready = { logLine = 'up (' }\n",
        "processes[0].ready.logLine",
        "invalid regular expression",
    ),
    (
        "p.toml",
        P + "ready = { http = 'ftp://x/' }\n",
        "processes[0].ready.http",
        "http:// or https:// URL",
    ),
    (
        "p.toml",
        P + "ready = { http = 'localhost:8000/health' }\n",
        "processes[0].ready.http",
        "http:// or https:// URL",
    ),
    ("p.toml", P + "ready = { tcp = '127.0.0.1' }\n", "processes[0].ready.tcp", "HOST:PORT"),
    ("p.toml", P + "ready = { tcp = '127.0.0.1:0' }\n", "processes[0].ready.tcp", "a port 1-65535"),
    (
        "p.toml",
        P + "health = { tcp = 'x:1', failures = 0 }\n",
        "processes[0].health.failures",
        "1 or more",
    ),
    (
        "p.toml",
        P + "ready = { tcp = 'x:1', failures = 2 }\n",
        "processes[0].ready.failures",
        "health probes only",
    ),
    ("p.toml", P + "ready = { notify = false }\n", "processes[0].ready.notify", "no probe"),
    ("p.toml", P + "ready = { exec = '' }\n", "processes[0].ready.exec", "empty"),
    (
        "p.toml",
        P + "ready = { tcp = 'x:1', period = '0s' }\n",
        "processes[0].ready.period",
        "above 0s",
    ),
    (
        "p.toml",
        P + "ready = { tcp = 'x:1', timeout = 'soon' }\n",
        "processes[0].ready.timeout",
        "invalid duration",
    ),
    (
        "p.toml",
        P + "ready = { tcp = 'x:1', every = '1s' }\n",
        "processes[0].ready.every",
        "unknown key",
    ),
    (
        "p.toml",
        P + "health = { watchdog = '5s', period = '1s' }\n",
        "processes[0].health.period",
        "a watchdog's period is its own value",
    ),
    ("p.toml", P + "health = { watchdog = '0s' }\n", "processes[0].health.watchdog", "above 0s"),
    ("p.toml", P + 'readyTimeout = "-1s"\n', "processes[0].readyTimeout", "negative"),
    (
        "p.toml",
        P + 'dependsOn = ["db"]\n',
        "processes[0].dependsOn",
        "unknown process 'db' (known: a)",
    ),
    ("p.toml", P + 'dependsOn = ["a"]\n', "processes[0].dependsOn", "'a' cannot depend on itself"),
    (
        "p.toml",
        P + 'dependsOn = { a = "ready" }\n',
        "processes[0].dependsOn",
        "cannot depend on itself",
    ),
    (
        "p.toml",
        '[[processes]]\nid = "a"\ncommand = "x"\ndependsOn = ["b"]\n'
        '[[processes]]\nid = "b"\ncommand = "x"\ndependsOn = ["c"]\n'
        '[[processes]]\nid = "c"\ncommand = "x"\ndependsOn = ["a"]\n',
        "processes[0].dependsOn",
        "cycle a -> b -> c -> a",
    ),
    (
        "p.toml",
        '[[processes]]\nid = "api"\ncommand = "x"\n'
        '[[processes]]\nid = "db"\ncommand = "x"\ndependsOn = ["web"]\n'
        '[[processes]]\nid = "web"\ncommand = "x"\ndependsOn = ["api", "db"]\n',
        "processes[1].dependsOn",
        "cycle db -> web -> db",
    ),
    (
        "p.toml",
        '[[processes]]\nid = "db"\ncommand = "x"\n'
        '[[processes]]\nid = "app"\ncommand = "x"\ndependsOn = { db = "healthy" }\n',
        "processes[1].dependsOn.db",
        "unknown condition 'healthy' (expected 'started', 'ready', 'completed', 'succeeded')",
    ),
    ("p.toml", P + 'dependsOn = "db"\n', "processes[0].dependsOn", "Expected"),
    # --- replicas and sockets (SPEC §9)
    ("p.toml", P + "replicas = -1\n", "processes[0].replicas", ">= 0"),
    ("p.toml", P + 'replicas = "2"\n', "processes[0].replicas", "Expected int"),
    ("p.toml", P + "port = 0\n", "processes[0].port", "must be a port 1-65535, got 0"),
    ("p.toml", P + "port = 70000\n", "processes[0].port", "must be a port 1-65535"),
    ("p.toml", P + 'sockets = ["localhost"]\n', "processes[0].sockets[0]", "HOST:PORT"),
    ("p.toml", P + 'sockets = ["::1:80"]\n', "processes[0].sockets[0]", "in brackets"),
    ("p.toml", P + 'sockets = ["unix:"]\n', "processes[0].sockets[0]", "needs a path"),
    ("p.toml", P + 'sockets = ["1.2.3.4:0"]\n', "processes[0].sockets[0]", "a port 1-65535"),
    (
        "p.toml",
        P + 'replicas = 2\nport = 8000\nsockets = ["127.0.0.1:${PORT}"]\n',
        "processes[0].sockets[0]",
        "cannot use a per-replica value",
    ),
    (
        "p.toml",
        '[[processes]]\nid = "web"\ncommand = "x"\nreplicas = 2\n'
        '[[processes]]\nid = "web-1"\ncommand = "x"\n',
        "processes[0].replicas",
        "replica id 'web-1' is taken by processes[1]",
    ),
    (
        "p.toml",
        '[[processes]]\nid = "web"\ncommand = "x"\nreplicas = 2\n'
        '[[processes]]\nid = "app"\ncommand = "x"\ndependsOn = ["web-2"]\n',
        "processes[1].dependsOn",
        "unknown process 'web-2'",
    ),
    (
        "p.toml",
        P + 'replicas = 2\ndependsOn = ["a-0"]\n',
        "processes[0].dependsOn",
        "'a-0' is a replica of this process",
    ),
    (
        "p.toml",
        '[[processes]]\nid = "web"\ncommand = "x"\nreplicas = 2\ndependsOn = ["app"]\n'
        '[[processes]]\nid = "app"\ncommand = "x"\ndependsOn = ["web-1"]\n',
        "processes[0].dependsOn",
        "cycle web -> app -> web",
    ),
    # --- maxMemory (SPEC §11)
    ("p.toml", P + 'maxMemory = "lots"\n', "processes[0].maxMemory", "invalid size 'lots'"),
    ("p.toml", P + 'maxMemory = "512 XB"\n', "processes[0].maxMemory", "invalid size"),
    ("p.toml", P + 'maxMemory = "0 MB"\n', "processes[0].maxMemory", "too small"),
    ("p.toml", P + "maxMemory = 0\n", "processes[0].maxMemory", ""),
    ("p.toml", P + "maxMemory = -5\n", "processes[0].maxMemory", ""),
    ("p.toml", P + "maxMemory = true\n", "processes[0].maxMemory", "Expected"),
    ("p.toml", P + "maxMemory = [1]\n", "processes[0].maxMemory", "Expected"),
]


@pytest.mark.parametrize(
    ("text", "size"),
    [('"512 MB"', 512_000_000), ('"1 GiB"', 1024**3), ('"300KiB"', 300 * 1024), ("1048576", 2**20)],
)
def test_max_memory_sizes(tmp_path: Path, text: str, size: int) -> None:
    path = write(tmp_path, "p.toml", P + f"maxMemory = {text}\n")
    assert load_config(path, environ=ENV).processes[0].max_memory == size


@pytest.mark.parametrize(
    ("name", "content", "field", "reason"), BAD, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD)]
)
def test_bad_config(tmp_path: Path, name: str, content: str, field: str, reason: str) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ=ENV)
    error = info.value
    assert error.file == str(path)
    assert error.field == field
    assert reason in error.reason, error.reason
    assert str(error).startswith(f"{path}: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config(tmp_path / "nope.toml")
    assert info.value.file == str(tmp_path / "nope.toml")


def test_directory_and_binary(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    binary = tmp_path / "b.json"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(binary)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_what_is_not_a_regular_file_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)  # nobody writes to it: opening it used to wait forever
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (4 * 1024 * 1024 + 1))
    cases = [
        (fifo, "cannot read: not a regular file"),
        (Path("/dev/null"), "cannot read: not a regular file"),
        (big, "cannot read: larger than 4 MiB"),
    ]
    for path, reason in cases:
        with pytest.raises(ConfigError) as info:
            load_config(path, environ=ENV)
        assert (info.value.file, info.value.reason) == (str(path), reason)
    config = write(tmp_path, "p.toml", P + 'envFile = "fifo.toml"\n')
    with pytest.raises(ConfigError) as info:
        load_config(config, environ=ENV)
    assert info.value.field == "processes[0].envFile"
    assert info.value.reason == f"cannot read {fifo}: not a regular file"


def test_bad_api_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "p.toml", P), api_listen="x", environ=ENV)
    assert info.value.field == "--api"


def test_probes_and_dependencies(tmp_path: Path) -> None:
    text = """
[[processes]]
id = "db"
command = "postgres"
ready = { tcp = "127.0.0.1:${PGPORT:-5432}", period = "2s" }
health = { exec = "pg_isready -q", failures = 2, timeout = "3s", initialDelay = "1s" }

[[processes]]
id = "migrate"
command = "migrate up"
restart = "never"
dependsOn = { db = "ready" }

[[processes]]
id = "app"
command = "uvicorn app:app"
readyTimeout = "5s"
ready = { http = "http://127.0.0.1:8000/health" }
health = { tcp = "127.0.0.1:8000", period = "5s" }
dependsOn = { db = "started", migrate = "succeeded" }

[[processes]]
id = "worker"
command = "worker"
ready = { logLine = "listening on \\\\d+" }
health = { watchdog = "30s" }
dependsOn = ["app"]
"""
    db, migrate, app, worker = load_config(write(tmp_path, "p.toml", text), environ=ENV).processes
    assert db.ready == Probe(kind=ProbeKind.TCP, target="127.0.0.1:5432", period=2.0)
    assert db.health == Probe(
        kind=ProbeKind.EXEC,
        command=("pg_isready", "-q"),
        period=10.0,
        timeout=3.0,
        initial_delay=1.0,
        failures=2,
    )
    assert migrate.depends_on == {"db": Condition.READY} and migrate.ready is None
    assert app.ready_timeout == 5.0 and app.ready == Probe(
        kind=ProbeKind.HTTP, target="http://127.0.0.1:8000/health"
    )
    assert app.health == Probe(kind=ProbeKind.TCP, target="127.0.0.1:8000", period=5.0)
    assert app.depends_on == {"db": Condition.STARTED, "migrate": Condition.SUCCEEDED}
    assert worker.ready == Probe(kind=ProbeKind.LOG_LINE, target="listening on \\d+")
    assert worker.depends_on == {"app": Condition.READY}
    # a watchdog's interval is its period, and one missed interval is a failure
    assert worker.health == Probe(kind=ProbeKind.WATCHDOG, period=30.0, failures=1)
    assert worker.notifies and not app.notifies


def test_replicas_port_and_sockets(tmp_path: Path) -> None:
    from processman.domain.replicas import instances

    text = """
[[processes]]
id = "web"
command = "uvicorn app:app --fd 3 --name ${PROCESSMAN_ID} --port ${PORT}"
replicas = 2
port = 8000
env = { SLOT = "${PROCESSMAN_GROUP}/${PROCESSMAN_REPLICA}" }
sockets = ["127.0.0.1:9000", "[::1]:9000", "unix:run/web.sock"]

[[processes]]
id = "one"
command = "serve --port ${PORT} --id ${PROCESSMAN_ID}"
port = 7000
dependsOn = ["web", "web-1"]

[[processes]]
id = "none"
command = "x"
replicas = 0
"""
    web, one, none = load_config(write(tmp_path, "p.toml", text), environ=ENV).processes
    assert web.replicas == 2 and web.port == 8000
    assert web.sockets == ("127.0.0.1:9000", "[::1]:9000", f"unix:{tmp_path}/run/web.sock")
    first, second = instances(web)
    assert second.id == "web-1" and second.group == "web" and second.replica == 1
    assert second.command == (
        "uvicorn",
        "app:app",
        "--fd",
        "3",
        "--name",
        "web-1",
        "--port",
        "8001",
    )
    assert first.env == {"SLOT": "web/0"}
    assert one.command == ("serve", "--port", "7000", "--id", "one") and one.replicas is None
    assert one.depends_on == {"web": Condition.READY, "web-1": Condition.READY}
    assert instances(none) == []
