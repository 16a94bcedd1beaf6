"""No process that serves or runs work starts with a secret key everybody knows.

Django signs the admin's sessions with SECRET_KEY, and django-q2 signs the pickled tasks it passes through the
broker with it: with a published key, anyone who can write to the broker (Redis, or the ORM broker's table)
can make a worker unpickle what they like. `secret_key_require` refuses to start the web server (wsgi.py),
the django-q2 clusters (`qcluster`, see statussync/apps.py) and `serve` unless DEBUG; one-off commands
(`migrate`, `statusmap`, the tests) still run with the development fallback.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# settings.py's fallback, so that one-off commands and the tests run without configuration.
DEVELOPMENT_KEY = "insecure-dev-key-set-SECRET_KEY-in-production"
# Keys printed in this repository or by Django: never a secret.
PUBLISHED_KEYS = frozenset({DEVELOPMENT_KEY, "change-me-to-a-long-random-string"})
MIN_LENGTH = 32


def secret_key_problem(*, key: str, debug: bool) -> str | None:
    """What is wrong with `key` for a process that serves or runs work, or None (always None with DEBUG)."""
    if debug:
        return None
    if not key:
        return "SECRET_KEY is not set"
    if key in PUBLISHED_KEYS or key.startswith("django-insecure-"):
        return "SECRET_KEY is a published placeholder, not a secret"
    if len(key) < MIN_LENGTH:
        return f"SECRET_KEY is shorter than {MIN_LENGTH} characters"
    return None


def secret_key_require(*, process: str) -> None:
    """Raise ImproperlyConfigured, naming `process`, unless the configured key is a real one (or DEBUG)."""
    problem = secret_key_problem(key=settings.SECRET_KEY, debug=settings.DEBUG)
    if problem is not None:
        raise ImproperlyConfigured(
            f"{problem}, so the {process} will not start. Set SECRET_KEY to a long random string, the same "
            "for every process and host (python -c 'import secrets; print(secrets.token_urlsafe(50))'), "
            "or DEBUG=true for a local trial. See docs/deploy.md."
        )
