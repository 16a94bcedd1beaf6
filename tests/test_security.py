"""A public deployment: Django's deploy checks, TLS behind a proxy, and the admin login throttle."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt

ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/admin/login/?next=/admin/"
PASSWORD = "correct horse battery staple"


@pytest.mark.parametrize(
    "extra",
    [{}, {"BXSYNC_BEHIND_PROXY": "true", "SECURE_SSL_REDIRECT": "true"}],
    ids=["defaults", "behind-a-proxy-redirecting"],
)
def test_it_passes_djangos_deploy_checks_with_the_production_settings(tmp_path, extra):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SECURE_", "BXSYNC_"))},
        # What `make run` gets in production: README "Connect real portals", step 5.
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "bxsync.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bxsync.sqlite3'}",
        "REDIS_URL": "",
        **extra,
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.fixture
def behind_tls_proxy(settings):
    settings.BXSYNC_BEHIND_PROXY = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    return settings


@pytest.mark.django_db
@pytest.mark.usefixtures("portals", "behind_tls_proxy")
def test_it_keeps_webhooks_working_behind_a_tls_proxy_that_redirects(client):
    from tests.support.webhooks import event_body

    body = event_body("crm_deal_update")
    over_tls = client.post(
        "/api/bitrix/crm/",
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_FORWARDED_PROTO="https",
    )
    plain = client.post(
        "/api/bitrix/crm/",
        body.replace(b"ts=1766047124", b"ts=1766047125"),
        content_type="application/x-www-form-urlencoded",
    )

    assert over_tls.status_code == 200
    assert "max-age=" in over_tls["Strict-Transport-Security"]
    assert plain.status_code == 200  # a redirected webhook would be an event lost
    assert client.get("/api/health/live/").status_code == 200
    assert client.get(LOGIN).status_code == 301
    assert client.get(LOGIN, HTTP_X_FORWARDED_PROTO="https").status_code == 200


@pytest.fixture
def manager(django_user_model, settings):
    # A fast hasher: each login attempt hashes once, and these tests make many.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return django_user_model.objects.create_superuser("manager", "m@example.com", PASSWORD)


def login(client, password: str, **extra):
    return client.post(LOGIN, {"username": "manager", "password": password}, **extra)


@pytest.mark.django_db
def test_it_locks_the_admin_login_after_repeated_failures(client, manager, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "guess").status_code == 200  # the form again, with an error

    assert login(client, "guess").status_code == 429
    locked = login(client, PASSWORD)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session
    # Not even the right password is stored where the admin shows attempts.
    assert not AccessAttempt.objects.filter(post_data__contains=PASSWORD).exists()
    assert not AccessAttempt.objects.filter(post_data__contains="guess").exists()


@pytest.mark.django_db
def test_it_lets_the_manager_in_again_after_the_cool_off(client, manager, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, "guess")
    AccessAttempt.objects.update(attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(hours=1))

    assert login(client, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_it_locks_one_address_behind_the_proxy_not_everyone(client, manager, settings):
    settings.BXSYNC_BEHIND_PROXY = True
    guesser = {"HTTP_X_FORWARDED_FOR": "203.0.113.7"}
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(client, "guess", **guesser)

    assert login(client, PASSWORD, **guesser).status_code == 429
    # Same proxy (REMOTE_ADDR), another client: the real manager still gets in.
    assert login(client, PASSWORD, HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 302


@pytest.mark.django_db
def test_it_trusts_only_the_address_its_own_proxy_added(client, manager, settings):
    settings.BXSYNC_BEHIND_PROXY = True
    for n in range(settings.AXES_FAILURE_LIMIT):
        # A guesser rotating a forged left-hand entry; the proxy appends the real address last.
        login(client, "guess", HTTP_X_FORWARDED_FOR=f"10.9.9.{n}, 203.0.113.7")

    assert login(client, PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.99, 203.0.113.7").status_code == 429
