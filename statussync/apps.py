import sys

from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class StatussyncConfig(AppConfig):
    name = "statussync"
    verbose_name = _("Status sync")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from statussync import checks  # noqa: F401 - registers the system checks and cache signals
        from statussync.mapping import catalog  # noqa: F401 - its cache signals
        from statussync.roles import roles_after_migrate

        # After auth's own handler (auth is installed first) has created this app's permissions.
        post_migrate.connect(roles_after_migrate, sender=self, dispatch_uid="statussync.roles")
        if sys.argv[1:2] == ["qcluster"]:
            # django-q2's own command: no hook of ours runs before its cluster starts but this one.
            from bxsync_project.secret_key import secret_key_require

            secret_key_require(process="django-q2 cluster (qcluster)")
