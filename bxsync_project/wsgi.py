"""WSGI entry point (gunicorn bxsync_project.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bxsync_project.settings")
application = get_wsgi_application()

from bxsync_project.secret_key import secret_key_require  # noqa: E402 - needs the settings loaded above

secret_key_require(process="web server")
