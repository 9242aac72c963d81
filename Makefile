# Two entry points, each doing its own set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint typecheck clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo/setup_demo.py
	cd examples/demo && ../../$(BIN)/processman run processman.toml

# Side-by-side with supervisord, circus and PM2 (installed into temporary folders), then
# development mode's reload latency and idle cost, the crash-loop leak check, and a py-spy
# profile of the launch.
bench: $(STAMP)
	$(BIN)/python benchmarks/compare.py --markdown docs/benchmarks.md
	$(BIN)/python benchmarks/scenarios.py --markdown docs/benchmarks.md
	$(BIN)/python benchmarks/spawn_methods.py
	$(BIN)/python benchmarks/deferred_imports.py
	$(BIN)/python benchmarks/reload_latency.py
	$(BIN)/python benchmarks/watch_idle.py
	$(BIN)/python benchmarks/crash_loop_leaks.py
	$(BIN)/python benchmarks/profile_launch.py  # last: py-spy needs ptrace

lint: $(STAMP)
	$(BIN)/ruff check src tests testdata examples benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy src

# Real programs some tests drive (redis-server, a Type=notify program; Chromium, which
# Playwright drives for the dashboard's tests): installed with apt-get where it can run
# (as root, as CI does); elsewhere their tests skip, saying why.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing with apt-get"; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			$$missing) >/dev/null 2>&1 \
			|| echo "apt-get could not install$$missing: their tests will skip"; \
	fi

test: $(STAMP) system-deps
	$(BIN)/ruff check src tests testdata examples benchmarks
	$(BIN)/mypy src
	$(BIN)/pytest -q -n 2  # two workers: most tests wait on real children, not the CPU

clean:
	rm -rf $(VENV) .venv-3.* .mypy_cache .pytest_cache .ruff_cache
