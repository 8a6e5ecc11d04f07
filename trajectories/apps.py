from django.apps import AppConfig


class TrajectoriesConfig(AppConfig):
    name = "trajectories"
    verbose_name = "Trajectories"
    default_auto_field = "django.db.models.BigAutoField"
