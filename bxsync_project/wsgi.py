"""WSGI entry point (`granian --interface wsgi bxsync_project.wsgi:application`, statussync/runner.py).

The two webhook URLs take a lean path: a second Django handler whose middleware chain holds only what a
webhook answer needs (security headers and redirects, the Host check, the frame header). A webhook has no
session, messages, language, login or static file, and the rest of the stack cost a tenth of its time in the
intake profile (docs/benchmarks.md "Webhook intake"). Everything else, the admin included, gets the whole
stack. Settings are only read here, never changed: both handlers live in every web process, and a setting
changed under one would be seen by the other (and by any thread serving meanwhile).
"""

import gc
import os

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.db import connection
from django.urls import get_resolver
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bxsync_project.settings")
site = get_wsgi_application()

from django.conf import settings  # noqa: E402 - after the settings module is named

from bxsync_project.secret_key import secret_key_require  # noqa: E402 - needs the settings loaded above

secret_key_require(process="web server")

WEBHOOK_PATHS = frozenset({"/api/bitrix/cms/", "/api/bitrix/crm/"})
WEBHOOK_MIDDLEWARE = frozenset(
    {
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    }
)


class WebhookHandler(WSGIHandler):
    """Django's WSGI handler with the middleware of WEBHOOK_MIDDLEWARE that settings.MIDDLEWARE lists, in its
    order, instead of all of it."""

    def load_middleware(self, is_async: bool = False) -> None:
        """Build the chain as `BaseHandler.load_middleware` does for a synchronous handler, from the lean
        list: Django's own reads settings.MIDDLEWARE and has no parameter for another list. Each middleware
        here takes synchronous calls (MiddlewareMixin) and never raises MiddlewareNotUsed."""
        if is_async:
            raise NotImplementedError("the lean webhook path is served by a WSGI (synchronous) server")
        self._view_middleware: list = []
        self._template_response_middleware: list = []
        self._exception_middleware: list = []
        # Django's innermost step (URL resolution and the view), which django-stubs does not declare.
        handler = convert_exception_to_response(self._get_response)  # type: ignore[attr-defined]
        for path in reversed(webhook_middleware()):
            middleware = import_string(path)(handler)
            # The hooks Django's own loader collects, in its order; none of the three defines one today.
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(0, middleware.process_view)
            if hasattr(middleware, "process_template_response"):
                self._template_response_middleware.append(middleware.process_template_response)
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler


def webhook_middleware() -> list[str]:
    """The middleware of the webhook path: WEBHOOK_MIDDLEWARE, in settings.MIDDLEWARE's order."""
    return [path for path in settings.MIDDLEWARE if path in WEBHOOK_MIDDLEWARE]


webhooks = WebhookHandler()


def application(environ, start_response):
    """The webhook URLs to the lean handler, everything else to Django's whole stack."""
    if environ.get("PATH_INFO", "") in WEBHOOK_PATHS:
        # No `SELECT 1` first: the webhook's one statement finds a dropped connection itself and is sent
        # again on a new one (statussync/upsert.py: upserts_run).
        return webhooks(environ, start_response)
    # What CONN_HEALTH_CHECKS did for every request (settings.py keeps connections without it): a
    # connection the database dropped while the process idled is replaced before the page uses it.
    if connection.connection is not None and not connection.is_usable():
        connection.close()
    return site(environ, start_response)


def web_process_warm() -> None:
    """Load now what the process's first requests would, then leave all of it out of Python's cyclic garbage
    collector. Django imports the URLconf, and with it DRF and drf-spectacular, at the first request: 200-400
    ms that the first webhook of a web process waited for while the others it had taken queued behind it
    (bench/intake_bench.py's slowest answers), and a full collection of what those imports left (50-160 ms)
    followed. `gc.freeze` after one collection moves every object alive now to a generation no collection
    scans again (https://docs.python.org/3/library/gc.html#gc.freeze): a full collection went from about
    50 ms to under 1 ms. Only what is loaded here is frozen: requests' garbage is collected as before."""
    resolver = get_resolver()
    for path in sorted(WEBHOOK_PATHS):
        resolver.resolve(path)
    gc.collect()
    gc.freeze()


web_process_warm()
