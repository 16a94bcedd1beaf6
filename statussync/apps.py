from django.apps import AppConfig


class StatussyncConfig(AppConfig):
    name = "statussync"
    verbose_name = "Status sync"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from statussync import checks  # noqa: F401 - registers the system checks
