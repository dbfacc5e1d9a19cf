from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Installed only so its template tags load; it has no models."""

    name = "core"
    verbose_name = "Core"
