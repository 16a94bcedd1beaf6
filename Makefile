# bxsync — see README.md. Every target creates/updates .venv/ first, so a fresh clone needs only `make demo`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo run test lint migrate clean lock messages screenshots

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) manage.py collectstatic --noinput --verbosity 0
	touch $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

# The demo's portals live in memory, so its database starts afresh each time (and never touches bxsync.sqlite3).
# It speaks Russian on Moscow time, as most Bitrix shops do (a browser asking for English still gets English).
DEMO_DATABASE_URL ?= sqlite:///$(CURDIR)/demo.sqlite3
DEMO_ENV = DATABASE_URL=$(DEMO_DATABASE_URL) LANGUAGE_CODE=$${LANGUAGE_CODE:-ru} TIME_ZONE=$${TIME_ZONE:-Europe/Moscow}
demo: $(STAMP)
	rm -f demo.sqlite3 demo.sqlite3-wal demo.sqlite3-shm
	$(DEMO_ENV) $(PY) manage.py migrate --noinput --verbosity 0
	$(DEMO_ENV) $(PY) -m demo

run: migrate
	$(PY) manage.py serve

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) manage.py check --fail-level WARNING
	$(PY) manage.py makemigrations --check --dry-run
	$(PY) manage.py spectacular --validate --fail-on-warn --file $(VENV)/openapi-check.yaml

# The whole suite twice, side by side: the embedded leg (SQLite, ORM broker) and the scaled leg (PostgreSQL
# and Redis at 127.0.0.1, which it fails without). Each leg's log is printed when both end (.ci/test-legs).
# `make test PYTEST_ARGS="tests/sync -k payment"` narrows both legs.
PYTEST_ARGS ?=
test: lint
	PY=$(PY) .ci/test-legs $(PYTEST_ARGS)

# docs/screenshots/*.png taken anew from the current code: the browser tests that save them (those calling
# `screenshot(...)` or `panel_shot(...)`), on the embedded leg, which writes there (the scaled leg writes its
# copies to its own temp dir). Needs what the browser tests need: Debian's chromium (.ci/system-packages).
SCREENSHOT_CALL := ^ +(screenshot|panel_shot)[(]
SCREENSHOT_TESTS = $(shell grep -lE '$(SCREENSHOT_CALL)' tests/browser/test_*.py)
screenshots: $(STAMP)
	env -u BXSYNC_TEST_SCREENSHOTS -u DATABASE_URL -u REDIS_URL BXSYNC_TEST_LEG=embedded \
		$(PY) -m pytest -q $(SCREENSHOT_TESTS)

# The translation catalogs: extract the marked strings into locale/*/LC_MESSAGES/django.po (Django's
# makemessages needs Debian's gettext: xgettext, msgmerge), then compile them to the committed .mo files in
# pure Python. Only developers run this; installing and testing need no gettext (docs/decisions.md).
MESSAGES_IGNORE := --ignore=.venv --ignore=staticfiles --ignore=tests --ignore=bench --ignore=bitrix_sandbox \
	--ignore=contrib --ignore=phpquery --ignore=docs
messages: $(STAMP)
	$(PY) manage.py makemessages --locale ru --no-obsolete $(MESSAGES_IGNORE)
	$(PY) -m bxsync_project.translations compile

# The pinned locks, from pyproject.toml's ranges (the dev lock is constrained to the runtime lock's pins).
PIP_COMPILE := $(VENV)/bin/pip-compile --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links
lock: $(STAMP)
	$(PIP_COMPILE) --output-file requirements.txt pyproject.toml
	$(PIP_COMPILE) --extra dev --constraint requirements.txt --output-file requirements-dev.txt pyproject.toml

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
