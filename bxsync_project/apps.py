"""The admin's site (bxsync_project/admin_site.py), and its names for the third-party apps bxsync installs, in
the user's words and language.

Django's documented way to rename an app one uses is a subclass of its AppConfig listed in INSTALLED_APPS
(docs.djangoproject.com/en/5.2/ref/applications/ "For application users"). Without it the Russian admin's
menu opens with "AXES" and "DJANGO Q", names a manager cannot read.
"""

from __future__ import annotations

from axes.apps import AppConfig as AxesConfig  # type: ignore[import-untyped]  # ships no types
from django.contrib.admin.apps import AdminConfig
from django.utils.translation import gettext_lazy
from django_q.apps import DjangoQConfig


class LoginProtectionConfig(AxesConfig):
    verbose_name = gettext_lazy("Login protection")


class BackgroundTasksConfig(DjangoQConfig):
    verbose_name = gettext_lazy("Task queue")


class BxsyncAdminConfig(AdminConfig):
    default_site = "bxsync_project.admin_site.BxsyncAdminSite"
