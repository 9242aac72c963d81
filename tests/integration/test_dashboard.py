"""The dashboard (SPEC §11) in a real browser: Debian's Chromium, headless, driven by
Playwright's Python package through ``executable_path`` (Playwright downloads no
browser), against a real ``processman run`` and a real host app that mounts it.

Where no browser can be had these tests skip, saying why; ``.ci/run`` sets
``PROCESSMAN_REQUIRE_BROWSER=1``, which makes that a failure instead.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.conftest import TESTDATA

if TYPE_CHECKING:
    from collections.abc import Iterator

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser")) if p is not None), None
)
#: as root in a container Chromium needs --no-sandbox; the rest keep it off the network
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (make test installs it from PyPI)"
    if CHROMIUM is None:
        return "no chromium on PATH (make test installs Debian's with apt-get as root)"
    return None


_missing = _browser_missing()
if _missing is not None and os.environ.get("PROCESSMAN_REQUIRE_BROWSER") == "1":
    pytest.fail(f"the browser tests must run here: {_missing}", pytrace=False)
pytestmark = pytest.mark.skipif(_missing is not None, reason=_missing or "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(tmp_path: Path, token: str | None = None) -> Path:
    python = sys.executable
    path = tmp_path / "processman.toml"
    api = f'[api]\ntoken = "{token}"\n' if token else ""
    path.write_text(
        f"""{api}
[[processes]]
id = "ticker"
command = ["{python}", "{TESTDATA / "ticker.py"}"]
stopTimeout = "2s"

[[processes]]
id = "web"
command = ["{python}", "{TESTDATA / "long_running.py"}"]
replicas = 2

[[processes]]
id = "idle"
command = ["{python}", "{TESTDATA / "echo.py"}"]
autostart = false
"""
    )
    return path


@contextlib.contextmanager
def serving(argv: list[str], base: str, token: str | None = None) -> Iterator[str]:
    """Run ``argv`` (``processman run`` or a host app) until ``base`` answers; yield it."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"{base}api/processes", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the API did not come up"
            time.sleep(0.05)
        yield base
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def processman_run(config: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "processman", "run", str(config), "--api", f"127.0.0.1:{port}"]


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            chromium.close()


def status_cell(page: Any, process_id: str, field: str) -> Any:
    return page.locator(f'tr[data-id="{process_id}"] [data-field="{field}"]')


def test_the_dashboard_is_live_its_buttons_and_logs_work_and_it_fits_a_phone(
    tmp_path: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    with serving(processman_run(write_config(tmp_path), port), base):
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        page.goto(base)
        for process_id in ("ticker", "web-0", "web-1", "idle"):
            expect(page.locator(f'tr[data-id="{process_id}"]')).to_be_visible()
        expect(page.locator('tr[data-group="web"]')).to_contain_text("2 of 2 running")
        expect(page.locator("#connection")).to_have_text("live")
        expect(status_cell(page, "ticker", "status")).to_have_text("running")

        # a stop through the API shows on the page within 1 s, with no reload
        assert httpx.post(f"{base}api/processes/ticker/stop", timeout=10).status_code == 200
        expect(status_cell(page, "ticker", "status")).to_have_text("stopped", timeout=1000)

        # the buttons: start, then restart gives a new pid
        page.get_by_role("button", name="start ticker", exact=True).click()
        expect(status_cell(page, "ticker", "status")).to_have_text("running")
        expect(status_cell(page, "ticker", "pid")).not_to_have_text("-")
        pid = status_cell(page, "ticker", "pid").inner_text()
        page.get_by_role("button", name="restart ticker", exact=True).click()
        expect(status_cell(page, "ticker", "pid")).not_to_have_text(re.compile(f"^(-|{pid})$"))
        expect(status_cell(page, "ticker", "status")).to_have_text("running")
        # a group's button restarts every replica (rolling)
        pids = [status_cell(page, f"web-{i}", "pid").inner_text() for i in (0, 1)]
        page.get_by_role("button", name="restart group web", exact=True).click()
        for i in (0, 1):
            expect(status_cell(page, f"web-{i}", "pid")).not_to_have_text(
                re.compile(f"^(-|{pids[i]})$"), timeout=10_000
            )

        # scaling down: the removed replica's row goes (event: removed)
        scaled = httpx.post(f"{base}api/processes/web/scale?replicas=1", timeout=10)
        assert scaled.status_code == 200
        expect(page.locator('tr[data-id="web-1"]')).to_have_count(0)
        expect(page.locator('tr[data-group="web"]')).to_contain_text("1 of 1 running")

        # CPU and memory, measured when the page asks (every 2 s)
        expect(status_cell(page, "web-0", "memory")).to_have_text(re.compile(r"MiB$"))

        # the log view: the tail, then a line printed after it opened
        page.get_by_role("button", name="ticker", exact=True).click()
        lines = page.locator("#log-lines")
        expect(lines).to_contain_text("tick ")
        seen = max(int(n) for n in re.findall(r"tick (\d+)", lines.inner_text()))
        expect(lines).to_contain_text(f"tick {seen + 3}\n", timeout=5000)

        page.screenshot(path=str(_screenshot_path(tmp_path)), full_page=True)
        page.close()

        # a phone: nothing wider than the screen, the page does not scroll sideways
        phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.goto(base)
        expect(status_cell(phone, "ticker", "status")).to_have_text("running")
        assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        box = phone.get_by_role("button", name="stop ticker", exact=True).bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
        phone.close()

        # without JavaScript: the table as of the page load
        context = browser.new_context(java_script_enabled=False)
        static = context.new_page()
        static.goto(base)
        expect(static.locator('tr[data-id="ticker"] .status')).to_have_text("running")
        expect(static.locator('tr[data-id="web-0"]')).to_be_visible()
        context.close()
    assert urls and all(url.startswith(base) for url in urls)  # nothing from elsewhere


def _screenshot_path(tmp_path: Path) -> Path:
    """docs/dashboard.png when asked for (``PROCESSMAN_SCREENSHOT=1``), else a temp file."""
    if os.environ.get("PROCESSMAN_SCREENSHOT") == "1":
        return DOCS / "dashboard.png"
    return tmp_path / "dashboard.png"


def test_with_a_token_the_page_asks_once_and_never_puts_it_in_a_url(
    tmp_path: Path, browser: Any
) -> None:
    from playwright.sync_api import expect

    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    secret = "t0ken-for-the-browser"
    with serving(processman_run(write_config(tmp_path, secret), port), base, secret):
        context = browser.new_context()
        page = context.new_page()
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        page.goto(base)
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("tr[data-id]")).to_have_count(0)  # nothing before the token
        page.fill("#token", "wrong")
        page.click("#login button")
        expect(page.locator("#login-error")).to_have_text("the token was refused")
        page.fill("#token", secret)
        page.click("#login button")
        expect(status_cell(page, "ticker", "status")).to_have_text("running")
        expect(page.locator("#connection")).to_have_text("live")
        assert page.evaluate("sessionStorage.getItem('processman-token')") == secret
        # a reload in the same tab: the token is kept, not asked again
        page.reload()
        expect(status_cell(page, "ticker", "status")).to_have_text("running")
        expect(page.locator("#login")).to_be_hidden()
        page.get_by_role("button", name="stop ticker", exact=True).click()
        expect(status_cell(page, "ticker", "status")).to_have_text("stopped")
        context.close()
    assert urls and not any(secret in url for url in urls)


def test_mounted_under_a_prefix_in_a_host_app(tmp_path: Path, browser: Any) -> None:
    from playwright.sync_api import expect

    port = free_port()
    argv = [sys.executable, str(TESTDATA / "host_app.py"), str(write_config(tmp_path)), str(port)]
    with serving(argv, f"http://127.0.0.1:{port}/processman/"):
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{port}/processman")  # no slash: redirected to one
        expect(status_cell(page, "ticker", "status")).to_have_text("running")
        expect(page.locator("#connection")).to_have_text("live")
        page.get_by_role("button", name="stop ticker", exact=True).click()
        expect(status_cell(page, "ticker", "status")).to_have_text("stopped")
        page.get_by_role("button", name="idle", exact=True).click()
        expect(page.locator("#logs")).to_be_visible()
        page.close()
