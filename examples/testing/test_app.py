"""The app tested against a real redis and worker, started by processman's fixture."""

import os
import time

import httpx

API = f"http://127.0.0.1:{os.environ.get('API_PORT', '8000')}"


def test_a_job_goes_through_the_worker(processman):
    pm = processman("processman.toml")  # redis, then the worker, then the api: all ready
    job = httpx.post(f"{API}/jobs", json={"text": "hello"}).json()
    deadline = time.monotonic() + 10
    while (answer := httpx.get(f"{API}/jobs/{job['id']}")).status_code == 404:
        assert time.monotonic() < deadline, pm.logs("worker", n=20)
        time.sleep(0.05)
    assert answer.json()["result"] == "HELLO"
    assert any("did" in entry.line for entry in pm.logs("worker"))


def test_the_worker_comes_back_after_a_restart(processman):
    pm = processman("processman.toml", only=["worker"])  # redis comes with it
    old = pm.status("worker").pid
    pm.restart("worker")
    pm.wait_ready("worker", timeout="10s")
    assert pm.status("worker").pid != old
    assert pm.status("redis").ready
