from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """Logging in safely: throttling and lockouts, session lifetime, the second factor."""

    name = "accounts"

    def ready(self) -> None:
        from accounts import signals  # noqa: F401  (connects the receivers)
