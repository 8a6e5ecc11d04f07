from django.apps import AppConfig


class TrajectoriesConfig(AppConfig):
    name = "trajectories"
    verbose_name = "Trajectories"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import auth, monitoring, signals  # noqa: F401 - connect the cache and monitor receivers
