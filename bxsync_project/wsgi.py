"""WSGI entry point (gunicorn bxsync_project.wsgi).

The two webhook URLs take a lean path: Django's handler with only the middleware a webhook answer needs
(security headers and redirects, the Host check, the frame header). A webhook has no session, messages,
language, login or static file, and the rest of the stack cost a tenth of its time in the intake profile
(docs/benchmarks.md "Webhook intake"). Everything else, the admin included, gets the whole stack.
"""

import os

from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bxsync_project.settings")
site = get_wsgi_application()

from django.conf import settings  # noqa: E402 - after the settings module is named

from bxsync_project.secret_key import secret_key_require  # noqa: E402 - needs the settings loaded above

secret_key_require(process="web server")

WEBHOOK_PATHS = frozenset({"/api/bitrix/cms/", "/api/bitrix/crm/"})
WEBHOOK_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


class WebhookHandler(WSGIHandler):
    """Django's WSGI handler with WEBHOOK_MIDDLEWARE (in settings.MIDDLEWARE's order) instead of all of it."""

    def load_middleware(self, is_async: bool = False) -> None:
        # Django builds the chain from settings.MIDDLEWARE only; this runs once, at import, before requests.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = [path for path in full if path in WEBHOOK_MIDDLEWARE]
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


webhooks = WebhookHandler()


def application(environ, start_response):
    """The webhook URLs to the lean handler, everything else to Django's whole stack."""
    if environ.get("PATH_INFO", "") in WEBHOOK_PATHS:
        return webhooks(environ, start_response)
    return site(environ, start_response)
