"""No web server or worker starts with a secret key everybody knows (review finding 4): django-q2 signs its
pickled tasks with it. One-off commands, the tests, the e2e stacks and `make demo` still run."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from bxsync_project.secret_key import DEVELOPMENT_KEY, secret_key_problem

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = "change-me-to-a-long-random-string"  # .env.example's


@pytest.mark.parametrize(
    ("key", "debug", "refused"),
    [
        ("", False, True),
        (DEVELOPMENT_KEY, False, True),
        (PLACEHOLDER, False, True),
        ("django-insecure-" + "x" * 50, False, True),
        ("short-but-random-9f2c", False, True),
        (secrets.token_urlsafe(50), False, False),
        (DEVELOPMENT_KEY, True, False),
        ("", True, False),
    ],
)
def test_it_tells_a_real_key_from_a_published_or_weak_one(key, debug, refused):
    assert (secret_key_problem(key=key, debug=debug) is not None) is refused


def run(args: list[str], tmp_path: Path, timeout: float = 60, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "BXSYNC_", "Q_"))}
    clean.pop("SECRET_KEY", None)
    clean.pop("DEBUG", None)
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "REDIS_URL": "", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


WEB = ["-c", "import bxsync_project.wsgi"]  # what the web server does first in each of its processes


def test_it_refuses_to_start_the_web_server_with_env_examples_placeholder(tmp_path):
    refused = run(WEB, tmp_path, SECRET_KEY=PLACEHOLDER)
    unset = run(WEB, tmp_path)

    assert refused.returncode != 0
    assert "SECRET_KEY is a published placeholder" in refused.stderr
    assert "web server will not start" in refused.stderr
    assert unset.returncode != 0


def test_it_starts_the_web_server_with_a_real_key_or_debug(tmp_path):
    assert run(WEB, tmp_path, SECRET_KEY=secrets.token_urlsafe(50)).returncode == 0
    assert run(WEB, tmp_path, DEBUG="true").returncode == 0


def test_it_refuses_to_start_a_worker_cluster_without_a_real_key(tmp_path):
    # Without the check the cluster would start and run until the timeout.
    refused = run(["manage.py", "qcluster"], tmp_path, timeout=60)

    assert refused.returncode != 0
    assert "qcluster" in refused.stderr
    assert "SECRET_KEY" in refused.stderr


def test_it_still_runs_one_off_commands_with_the_development_key(tmp_path):
    result = run(["manage.py", "check"], tmp_path)

    assert result.returncode == 0, result.stderr
