# webhook_guard developer entry points.
#
#   make demo    create .venv if needed, install '.[demo]', run `webhook-guard demo`
#   make test    ruff, mypy (strict), pytest, then pytest again on the oldest Flask and on arq,
#                then a few-second smoke run of every benchmark script (bench-smoke)
#   make venv    create/refresh .venv with everything `make test` needs
#   make docs    build the documentation site (site/index.html) strictly
#   make bench   run every benchmark (benchmarks/run_all.sh -> benchmarks/results.md; needs wrk)
#   make lint | typing | pytest | test-flask-oldest | test-arq | bench-smoke   single steps
#   make constraints   re-resolve the test dependencies and pin them (requirements/constraints.txt)
#   make clean   remove virtualenvs, caches and build output
#
# Variables: PYTHON (interpreter used to create .venv, >= 3.10), PYTEST_ARGS, BENCH_VENV,
# FLASK_OLDEST_PYTHON (interpreter for .venv-flask-oldest; default: a 3.10 if found).
#
# Virtualenvs are created once and re-used. pip runs again only when pyproject.toml,
# requirements/*.txt or the install arguments change: each install leaves a stamp file named
# after a checksum of those, e.g. .venv/.installed-test-1234567890.

PYTHON ?= python3
VENV ?= .venv
OLDEST_VENV ?= .venv-flask-oldest
# arq 0.28 pins redis<6 while Celery's kombu needs redis>=6.4: arq gets its own venv.
ARQ_VENV ?= .venv-arq
# Benchmark servers and peers (httptools, uvloop, the peers' verifiers): requirements/bench.txt.
BENCH_VENV ?= .venv-bench
PYTEST_ARGS ?=

PIP_FLAGS := -q --disable-pip-version-check
LINT_PATHS := $(wildcard webhook_guard tests sample_apps benchmarks fuzz)
OLDEST_TEST_PATHS := tests/adapters/flask tests/core
ARQ_TEST_PATHS := tests/queues/test_arq.py tests/stores

# CI installs exactly the versions in requirements/constraints.txt (make constraints refreshes it).
CONSTRAINTS := -c requirements/constraints.txt
DEMO_PIP_ARGS := -e '.[demo]' $(CONSTRAINTS)
TEST_PIP_ARGS := -e '.[flask,django,starlette,fastapi,demo,celery,rq,dramatiq,metrics]' -r requirements/test.txt -r requirements/engines.txt -r requirements/browser.txt -r requirements/docs.txt $(CONSTRAINTS)
# Unpinned: what `make constraints` resolves afresh.
FRESH_PIP_ARGS := -e '.[flask,django,starlette,fastapi,demo,celery,rq,dramatiq,metrics]' -r requirements/test.txt -r requirements/engines.txt -r requirements/browser.txt -r requirements/docs.txt
OLDEST_PIP_ARGS := -r requirements/flask-oldest.txt -e . pytest pytest-timeout hypothesis gunicorn httpx
ARQ_PIP_ARGS := -e . -r requirements/arq.txt
BENCH_PIP_ARGS := -e '.[flask,django,starlette,fastapi]' -r requirements/bench.txt $(CONSTRAINTS)

DEP_FILES := pyproject.toml $(sort $(wildcard requirements/*.txt))
# $(call stamp_hash,<pip args>): checksum of the dependency files plus the pip arguments.
stamp_hash = $(firstword $(shell { cat $(DEP_FILES); printf '%s\n' "$(1)"; } 2>/dev/null | cksum))

DEMO_STAMP := $(VENV)/.installed-demo-$(call stamp_hash,$(DEMO_PIP_ARGS))
TEST_STAMP := $(VENV)/.installed-test-$(call stamp_hash,$(TEST_PIP_ARGS))
OLDEST_STAMP := $(OLDEST_VENV)/.installed-$(call stamp_hash,$(OLDEST_PIP_ARGS))
ARQ_STAMP := $(ARQ_VENV)/.installed-$(call stamp_hash,$(ARQ_PIP_ARGS))
BENCH_STAMP := $(BENCH_VENV)/.installed-$(call stamp_hash,$(BENCH_PIP_ARGS))

# A Python 3.10 for the oldest-Flask run: pyenv's (even when not the active version), then
# python3.10 on PATH, else $(PYTHON). Each candidate must actually run (pyenv shims of
# inactive versions exist but fail). Recursive (=) so it is evaluated only when used.
FLASK_OLDEST_PYTHON ?= $(shell \
	for c in "$$(pyenv which python3.10 2>/dev/null)" \
	         $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10 2>/dev/null | sort -V -r) \
	         "$$(command -v python3.10 2>/dev/null)"; do \
	  if [ -n "$$c" ] && "$$c" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' >/dev/null 2>&1; \
	  then echo "$$c"; exit 0; fi; \
	done; echo "$(PYTHON)")

# $(call check_python,<interpreter>): fail clearly if it is missing or older than 3.10.
define check_python
	@"$(1)" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null || { \
	  echo "error: webhook_guard needs Python >= 3.10, but '$(1)' is" \
	       "$$("$(1)" --version 2>/dev/null || echo 'not runnable')." >&2; \
	  echo "       Re-run with e.g. 'make $(MAKECMDGOALS) PYTHON=python3.11'." >&2; \
	  exit 1; }
endef

# $(call run_pytest,<pytest command>): exit code 5 (no tests collected) is a failure, loudly.
define run_pytest
	@rc=0; echo "+ $(1)"; $(1) || rc=$$?; \
	if [ $$rc -eq 5 ]; then \
	  echo "error: pytest collected no tests (exit code 5); treating this as a failure." >&2; \
	fi; \
	exit $$rc
endef

.DEFAULT_GOAL := help
.PHONY: help demo test venv lint typing pytest test-flask-oldest test-arq clean constraints docs \
	bench bench-smoke

help:
	@sed -n '3,14s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

demo: $(DEMO_STAMP)
	$(VENV)/bin/webhook-guard demo

test: $(TEST_STAMP)
	@echo "==> ruff"
	$(VENV)/bin/ruff check $(LINT_PATHS)
	@echo "==> mypy (strict)"
	$(VENV)/bin/mypy
	@echo "==> docs (mkdocs --strict)"
	@$(MAKE) --no-print-directory docs
	@echo "==> pytest"
	$(call run_pytest,$(VENV)/bin/python -m pytest $(PYTEST_ARGS))
	@echo "==> pytest on the oldest supported Flask ($(OLDEST_VENV))"
	@$(MAKE) --no-print-directory test-flask-oldest
	@echo "==> pytest on arq and the delivery stores ($(ARQ_VENV))"
	@$(MAKE) --no-print-directory test-arq
	@echo "==> benchmark smoke ($(BENCH_VENV))"
	@$(MAKE) --no-print-directory bench-smoke

venv: $(TEST_STAMP)

lint: $(TEST_STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)

typing: $(TEST_STAMP)
	$(VENV)/bin/mypy

# The documentation site into site/: a broken link or an unreadable docstring fails the build.
docs: $(TEST_STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

pytest: $(TEST_STAMP)
	$(call run_pytest,$(VENV)/bin/python -m pytest $(PYTEST_ARGS))

test-flask-oldest: $(OLDEST_STAMP)
	$(call run_pytest,$(OLDEST_VENV)/bin/python -m pytest $(OLDEST_TEST_PATHS) -q)

test-arq: $(ARQ_STAMP)
	$(call run_pytest,$(ARQ_VENV)/bin/python -m pytest $(ARQ_TEST_PATHS) -q)

# Every benchmark, full length (~20 min on 2 cores): the numbers in docs/benchmarks.md.
bench: $(BENCH_STAMP) $(TEST_STAMP) $(ARQ_STAMP)
	BENCH_VENV="$(abspath $(BENCH_VENV))" benchmarks/run_all.sh

# Each benchmark script for a few seconds (< 60 s in all on 2 cores), so that none can rot: each
# fails on a broken server, a wrong request or a duplicate where a new delivery was meant.
# engines.py uses .venv (Celery, RQ, Dramatiq) and says so when Redis/RabbitMQ are not running.
bench-smoke: $(BENCH_STAMP) $(TEST_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/verify.py --smoke > /dev/null
	$(BENCH_VENV)/bin/python benchmarks/enqueue_drain.py --smoke > /dev/null
	$(BENCH_VENV)/bin/python benchmarks/ack_path.py --smoke > /dev/null
	$(VENV)/bin/python benchmarks/engines.py --smoke > /dev/null
	$(VENV)/bin/python benchmarks/postgres.py --smoke > /dev/null

$(VENV)/bin/python:
	$(call check_python,$(PYTHON))
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip

$(DEMO_STAMP): | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) $(DEMO_PIP_ARGS)
	@rm -f $(VENV)/.installed-demo-*
	@touch $@

$(TEST_STAMP): | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) $(TEST_PIP_ARGS)
	@rm -f $(VENV)/.installed-test-* $(VENV)/.installed-demo-*
	@touch $@ $(DEMO_STAMP)

$(OLDEST_VENV)/bin/python:
	$(call check_python,$(FLASK_OLDEST_PYTHON))
	$(FLASK_OLDEST_PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip

$(OLDEST_STAMP): | $(OLDEST_VENV)/bin/python
	$(OLDEST_VENV)/bin/python -m pip install $(PIP_FLAGS) $(OLDEST_PIP_ARGS)
	@rm -f $(OLDEST_VENV)/.installed-*
	@touch $@

$(ARQ_VENV)/bin/python:
	$(call check_python,$(PYTHON))
	$(PYTHON) -m venv $(ARQ_VENV)
	$(ARQ_VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip

$(BENCH_VENV)/bin/python:
	$(call check_python,$(PYTHON))
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip

$(BENCH_STAMP): | $(BENCH_VENV)/bin/python
	$(BENCH_VENV)/bin/python -m pip install $(PIP_FLAGS) $(BENCH_PIP_ARGS)
	@rm -f $(BENCH_VENV)/.installed-*
	@touch $@

$(ARQ_STAMP): | $(ARQ_VENV)/bin/python
	$(ARQ_VENV)/bin/python -m pip install $(PIP_FLAGS) $(ARQ_PIP_ARGS)
	@rm -f $(ARQ_VENV)/.installed-*
	@touch $@

# Re-resolve every test dependency afresh into a scratch venv and pin the result.
constraints:
	rm -rf .venv-constraints
	$(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	.venv-constraints/bin/python -m pip install $(PIP_FLAGS) $(FRESH_PIP_ARGS)
	{ sed -n '1,3p' requirements/constraints.txt; \
	  .venv-constraints/bin/python -m pip freeze --exclude-editable | grep -v '^webhook' | grep -v '^atheris'; \
	  echo 'atheris==3.0.0; python_version == "3.11" and platform_machine == "x86_64"'; } > requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt
	rm -rf .venv-constraints

clean:
	rm -rf $(VENV) $(OLDEST_VENV) $(ARQ_VENV) $(BENCH_VENV) .tox build dist site *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./.git -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
