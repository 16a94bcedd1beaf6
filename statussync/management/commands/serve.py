"""`manage.py serve` (what `make run` runs): the web server and all workers, in the foreground."""

from __future__ import annotations

import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from bxsync_project.secret_key import secret_key_require
from statussync.recovery import work_resume_in_background
from statussync.runner import services_run
from statussync.schedules import schedules_ensure


class Command(BaseCommand):
    help = "Run the production web server on PORT and every worker process; Ctrl+C stops them all."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "0.0.0.0"))  # noqa: S104 - a server
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args, host: str, port: int, **options):
        try:
            secret_key_require(process="service")
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        missing = [
            name
            for name in (
                "BXSYNC_CMS_REST_URL",
                "BXSYNC_CMS_APP_TOKEN",
                "BXSYNC_CRM_REST_URL",
                "BXSYNC_CRM_APP_TOKEN",
            )
            if not getattr(settings, name)
        ]
        if missing:
            self.stderr.write(f"warning: {', '.join(missing)} not set; /api/health/ will report it")
        if not os.environ.get("ALLOWED_HOSTS"):
            self.stderr.write(
                f"warning: ALLOWED_HOSTS is not set, so only {', '.join(settings.ALLOWED_HOSTS)} are served; "
                "Bitrix's webhooks to any other host name get 400"
            )
        if settings.CSRF_COOKIE_SECURE and not settings.BXSYNC_BEHIND_PROXY:
            self.stderr.write(
                "warning: the admin's cookies are sent only over HTTPS, and BXSYNC_BEHIND_PROXY is not set: "
                'put bxsync behind a TLS proxy and set it (README "Security"), or set DEBUG=true for a '
                "local trial over plain HTTP"
            )
        schedules_ensure()
        # The work a killed predecessor left: resumed within its lease, not at the sweeper's next look.
        work_resume_in_background()
        self.stdout.write(f"bxsync on http://{host}:{port}/ (admin at /admin/, health at /api/health/)")
        raise SystemExit(services_run(host=host, port=port))
