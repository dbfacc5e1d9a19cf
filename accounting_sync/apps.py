from django.apps import AppConfig


class AccountingSyncConfig(AppConfig):
    name = "accounting_sync"
    verbose_name = "Accounting sync"
