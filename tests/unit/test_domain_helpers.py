"""Durations, templates, dotenv, interpreter resolution, line splitting, child environment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processman.domain.dotenv import parse_dotenv
from processman.domain.durations import parse_duration
from processman.domain.environment import child_environment
from processman.domain.errors import InterpreterNotFoundError, SpawnError, TemplateError
from processman.domain.interpreter import resolve_argv
from processman.domain.lines import LineSplitter
from processman.domain.model import ProcessSpec
from processman.domain.templating import expand


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1m30s", 90.0),
        ("0s", 0.0),
        (0, 0.0),
        ("1h", 3600.0),
        ("10us", 1e-5),
    ],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["-1s", "5", 5, 1.5, True, "", "1x", "s", "1s2", "1 s", None])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("field", "seconds", "message"),
    [
        ("backoff", -1.0, "backoff is negative"),
        ("stop_timeout", float("nan"), "stop_timeout must be at most 2562047h, got nan"),
        ("healthy_after", float("inf"), "healthy_after must be at most 2562047h, got inf"),
        ("watch_debounce", 1e13, "watch_debounce must be at most 2562047h"),
    ],
)
def test_a_spec_from_python_refuses_what_a_config_file_may_not_say(
    field: str, seconds: float, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ProcessSpec(id="p", cwd="/", command=("x",), **{field: seconds})  # type: ignore[arg-type]


def test_durations_end_where_go_s_do() -> None:
    assert parse_duration("2562047h") == 2562047 * 3600.0
    # 400 digits would read as infinity: "restart in infs" was the symptom
    for bad in ("2562048h", "9" * 400 + "s", "1" + "0" * 20 + "ms"):
        with pytest.raises(ValueError, match="longer than the most allowed, 2562047h"):
            parse_duration(bad)


def lookup(name: str) -> str | None:
    return {"HOME": "/home/u", "EMPTY": ""}.get(name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${HOME}/x", "/home/u/x"),
        ("${MISSING:-fallback}", "fallback"),
        ("${HOME:-fallback}", "/home/u"),
        ("${EMPTY:-d}", ""),
        ("cost $$5", "cost $5"),
        ("$$HOME", "$HOME"),
        ("a $ b", "a $ b"),
        ("no templates", "no templates"),
        ("${MISSING:-}", ""),
    ],
)
def test_templates(text: str, expected: str) -> None:
    assert expand(text, lookup) == expected


@pytest.mark.parametrize("bad", ["${MISSING}", "$HOME", "${HOME", "${1X}"])
def test_bad_templates(bad: str) -> None:
    with pytest.raises(TemplateError):
        expand(bad, lookup)


def test_undefined_template_names_the_variable() -> None:
    with pytest.raises(TemplateError, match=r"\$\{MISSING\}") as info:
        expand("x ${MISSING} y", lookup)
    assert info.value.name == "MISSING"


def test_dotenv() -> None:
    text = (
        "# comment\n\nA=1\nexport B = two words \nC='single $x'\n"
        'D="line\\nnext"\nE=value # comment\nF=\n'
    )
    assert parse_dotenv(text) == {
        "A": "1",
        "B": "two words",
        "C": "single $x",
        "D": "line\nnext",
        "E": "value",
        "F": "",
    }


@pytest.mark.parametrize("bad", ["novalue", "1A=x", 'A="unterminated'])
def test_bad_dotenv(bad: str) -> None:
    with pytest.raises(ValueError, match="line 1"):
        parse_dotenv(bad)


def script_spec(script: str, interpreter: str | None = None, cwd: str = "/app") -> ProcessSpec:
    return ProcessSpec(
        id="p", cwd=cwd, script=f"{cwd}/{script}", interpreter=interpreter, args=("-v",)
    )


PY_CANDIDATES = [
    "/app/.venv/bin/python",
    "/app/venv/bin/python",
    "/app/.venv/Scripts/python.exe",
    "/app/venv/Scripts/python.exe",
]


@pytest.mark.parametrize("found", [*PY_CANDIDATES, "python3"])
def test_python_candidates_in_order(found: str) -> None:
    files = set(PY_CANDIDATES[PY_CANDIDATES.index(found) :]) if found in PY_CANDIDATES else set()
    argv, interpreter = resolve_argv(
        script_spec("w.py"),
        exists=files.__contains__,
        which=lambda name: "/usr/bin/python3" if name == "python3" else None,
    )
    expected = found if found in PY_CANDIDATES else "/usr/bin/python3"
    assert argv == (expected, "/app/w.py", "-v") and interpreter == expected


def test_windows_candidates_and_python_on_path() -> None:
    spec = script_spec("w.py", cwd="C:\\app")
    tried: list[str] = []

    def exists(path: str) -> bool:
        tried.append(path)
        return False

    argv, _ = resolve_argv(spec, exists=exists, which=lambda n: f"C:\\py\\{n}.exe", windows=True)
    assert tried == [
        "C:\\app\\.venv\\bin\\python",
        "C:\\app\\venv\\bin\\python",
        "C:\\app\\.venv\\Scripts\\python.exe",
        "C:\\app\\venv\\Scripts\\python.exe",
    ]
    assert argv[0] == "C:\\py\\python.exe"


@pytest.mark.parametrize(
    ("script", "files", "expected"),
    [
        ("a.ts", {"/app/node_modules/.bin/ts-node"}, "/app/node_modules/.bin/ts-node"),
        ("a.ts", {"/app/node_modules/.bin/tsx"}, "/app/node_modules/.bin/tsx"),
        ("a.ts", set(), "/usr/bin/node"),
        ("a.js", set(), "/usr/bin/node"),
        ("a.mjs", set(), "/usr/bin/node"),
        ("a.cjs", set(), "/usr/bin/node"),
    ],
)
def test_node_candidates(script: str, files: set[str], expected: str) -> None:
    argv, _ = resolve_argv(
        script_spec(script), exists=files.__contains__, which=lambda n: f"/usr/bin/{n}"
    )
    assert argv[0] == expected


def test_other_scripts_run_directly() -> None:
    argv, interpreter = resolve_argv(
        script_spec("run.sh"), exists=lambda p: False, which=lambda n: None
    )
    assert argv == ("/app/run.sh", "-v") and interpreter is None


def test_not_found_lists_every_candidate() -> None:
    with pytest.raises(InterpreterNotFoundError) as info:
        resolve_argv(script_spec("w.py"), exists=lambda p: False, which=lambda n: None)
    assert info.value.tried == (*PY_CANDIDATES, "python3 (on PATH)")
    assert "/app/.venv/bin/python" in str(info.value)


def test_a_broken_venv_link_is_an_error_not_the_systems_python() -> None:
    # A venv whose Python was removed (an upgrade): falling through to python3 on PATH ran
    # the script without its packages, and the error was an ImportError in the child.
    links = {"/app/.venv/bin/python": "/usr/local/bin/python3.9"}
    with pytest.raises(InterpreterNotFoundError) as info:
        resolve_argv(
            script_spec("w.py"),
            exists=lambda p: False,
            which=lambda n: "/usr/bin/python3",
            broken_link=links.get,
        )
    assert info.value.tried == (
        "/app/.venv/bin/python (a broken link to /usr/local/bin/python3.9: its target is gone)",
    )


def test_explicit_interpreter() -> None:
    argv, _ = resolve_argv(
        script_spec("w.py", interpreter="pypy3"),
        exists=lambda p: False,
        which=lambda n: f"/opt/{n}",
    )
    assert argv == ("/opt/pypy3", "/app/w.py", "-v")
    with pytest.raises(InterpreterNotFoundError, match="/opt/py"):
        resolve_argv(
            script_spec("w.py", interpreter="/opt/py"), exists=lambda p: False, which=lambda n: None
        )


def test_command_is_returned_as_written() -> None:
    spec = ProcessSpec(id="c", cwd="/", command=("node", "s.js"), args=("--x",))
    assert resolve_argv(spec, exists=lambda p: False, which=lambda n: None) == (
        ("node", "s.js", "--x"),
        None,
    )


def test_line_splitter() -> None:
    splitter = LineSplitter(limit=8)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\nde\r\nf") == ["abc", "de"]
    assert splitter.feed(b"\xff\n") == ["f\ufffd"]
    assert splitter.feed(b"0123456789abcdefXY\n") == ["01234567", "89abcdef", "XY"]
    assert splitter.feed(b"0123456789") == ["01234567"]  # an unterminated long line is cut too
    assert splitter.flush() == ["89"]
    assert splitter.flush() == []


def test_line_splitter_keeps_characters_whole() -> None:
    splitter = LineSplitter(limit=8)
    text = "aaaaaaa\u00e9bb\n"  # the 2-byte é straddles byte 8
    assert splitter.feed(text.encode()) == ["aaaaaaa", "\u00e9bb"]


def test_line_splitter_keeps_four_byte_characters_whole() -> None:
    splitter = LineSplitter(limit=8)
    assert splitter.feed("aaaaaa\U0001f600b\n".encode()) == ["aaaaaa", "\U0001f600b"]
    assert splitter.feed(b"\x80" * 10 + b"\n") == ["\ufffd" * 8, "\ufffd" * 2]


def _reference_lines(data: bytes, limit: int) -> list[str]:
    """Line by line, the obvious way: what the splitter must equal, however the bytes arrive."""
    splitter = LineSplitter(limit)
    lines = []
    for raw in data.split(b"\n")[:-1]:
        line = raw[:-1] if raw.endswith(b"\r") else raw
        lines += [piece.decode("utf-8", "replace") for piece in splitter._pieces(line)]
    return lines


def test_line_splitter_drops_only_the_cr_of_a_crlf_whatever_the_chunks() -> None:
    line = "aaaaaa\u00e9\u00e9\u00e9\r\U0001f600".encode()  # 17 bytes, a CR inside
    for chunks in ([line + b"\n"], [line, b"\n"]):
        splitter = LineSplitter(limit=16)
        assert [x for c in chunks for x in splitter.feed(c)] == [
            "aaaaaa\u00e9\u00e9\u00e9\r",
            "\U0001f600",
        ]
    crlf = b"a" * 16 + b"\r\n"  # 16 bytes once the CR of the CRLF is gone: not cut
    for chunks in ([crlf], [crlf[:-1], b"\n"], [crlf[:-2], b"\r", b"\n"]):
        splitter = LineSplitter(limit=16)
        assert [x for c in chunks for x in splitter.feed(c)] == ["a" * 16]
    splitter = LineSplitter(limit=16)
    assert splitter.feed(b"a" * 16 + b"\r") == []
    assert splitter.feed(b"b\n") == ["a" * 16, "\rb"]  # that CR was text after all


@given(
    st.lists(
        st.sampled_from(
            [b"a", b"\n", b"\r", b"\xc3\xa9", b"\xe2\x82", b"\xff", b"\xf0\x9f\x98\x80"]
        ),
        max_size=80,
    ),
    st.lists(st.integers(1, 40), max_size=10),
)
def test_line_splitter_equals_decoding_line_by_line(tokens: list[bytes], cuts: list[int]) -> None:
    data = b"".join(tokens) + b"\n"
    splitter = LineSplitter(limit=16)
    lines, position = [], 0
    for size in [*cuts, len(data)]:  # the same bytes, fed in arbitrary chunks
        lines += splitter.feed(data[position : position + size])
        position += size
    assert lines == _reference_lines(data, 16)


def test_child_environment() -> None:
    spec = ProcessSpec(id="w", cwd="/", script="/w.py", env={"A": "env", "PROCESSMAN_ID": "x"})
    env = child_environment({"A": "inherited", "PROCESSMAN_TOKEN": "secret", "P": "1"}, spec, "")
    assert env == {
        "A": "env",
        "P": "1",
        "PROCESSMAN_ID": "w",
        "PROCESSMAN_GROUP": "w",
        "PYTHONUNBUFFERED": "1",
    }
    command = ProcessSpec(id="c", cwd="/", command=("x",), env={})
    assert child_environment({}, command, "http://127.0.0.1:9") == {
        "PROCESSMAN_ID": "c",
        "PROCESSMAN_GROUP": "c",
        "PROCESSMAN_API": "http://127.0.0.1:9",
    }
    # a replica: its own id, its group and index, and PORT = port + index (over env's)
    replica = ProcessSpec(
        id="web-2", group="web", replica=2, port=8000, cwd="/", command=("x",), env={"PORT": "1"}
    )
    assert child_environment({}, replica, "") == {
        "PORT": "8002",
        "PROCESSMAN_ID": "web-2",
        "PROCESSMAN_GROUP": "web",
        "PROCESSMAN_REPLICA": "2",
    }
    own = ProcessSpec(id="w", cwd="/", script="/w.py", env={"PYTHONUNBUFFERED": "0"})
    assert child_environment({}, own, "")["PYTHONUNBUFFERED"] == "0"


@pytest.mark.parametrize(
    ("program", "exc", "files", "reason"),
    [
        # exec said EACCES: /root/bin could not be searched, and the program is nowhere
        ("tool", PermissionError(13, "Permission denied"), set(), "not found on PATH"),
        # ... or it is there, and not executable
        ("tool", PermissionError(13, "Permission denied"), {"/usr/bin/tool"}, "permission denied"),
        ("tool", OSError(40, "Too many levels of symbolic links"), set(), "not found on PATH"),
        ("tool", OSError(8, "Exec format error"), {"/usr/bin/tool"}, "Exec format error"),
        ("tool", FileNotFoundError(2, "No such file"), set(), "not found on PATH"),
        ("./tool", FileNotFoundError(2, "No such file"), set(), "file not found"),
        ("./tool", PermissionError(13, "Permission denied"), set(), "permission denied"),
        ("tool", ValueError("embedded null byte"), set(), "embedded null byte"),
    ],
)
def test_exec_errors_say_what_went_wrong(
    program: str, exc: OSError | ValueError, files: set[str], reason: str
) -> None:
    error = SpawnError.from_exec(
        program, exc, search_path=["/root/bin", "/usr/bin"], exists=files.__contains__
    )
    assert error.program == program
    assert error.reason.startswith(reason)


def test_a_working_directory_that_cannot_be_entered_is_named() -> None:
    # the directory changed between the manager's check and the child's chdir: the child
    # reports the chdir with the directory as its filename
    exc = PermissionError(13, "Permission denied", "/srv/locked")
    error = SpawnError.from_exec(
        "echo",
        exc,
        search_path=["/usr/bin"],
        exists={"/usr/bin/echo"}.__contains__,
        cwd="/srv/locked",
    )
    assert (
        str(error)
        == "cannot start /srv/locked: working directory cannot be entered (permission denied)"
    )
    exec_failed = PermissionError(13, "Permission denied", "/usr/bin/echo")
    error = SpawnError.from_exec(
        "echo",
        exec_failed,
        search_path=["/usr/bin"],
        exists={"/usr/bin/echo"}.__contains__,
        cwd="/srv",
    )
    assert error.reason == "permission denied (is it executable?)"
