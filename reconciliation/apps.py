from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ReconciliationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "reconciliation"
    verbose_name = "Reconciliation"

    def ready(self) -> None:
        # The overview is accounting_sync's, below this app: it is told of the column here.
        from accounting_sync.views import overview
        from reconciliation.overview import overview_cells

        overview.add_column(overview.Column("reconciliation", _("Reconciliation"), overview_cells))
