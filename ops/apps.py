from django.apps import AppConfig


class OpsConfig(AppConfig):
    """What an operator points a load balancer and Prometheus at (issue 16): /healthz,
    /readyz, /metrics. Above the product's apps: it reads their tables, none imports it."""

    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from core import events
        from ops import metrics

        # The engine, the API and the HTTP layer send these (core/events.py).
        events.records_received.connect(metrics.records_received, dispatch_uid="ops.received")
        events.attempts_recorded.connect(metrics.attempts_recorded, dispatch_uid="ops.attempts")
        events.run_ended.connect(metrics.run_ended, dispatch_uid="ops.run_ended")
        events.erp_called.connect(metrics.erp_called, dispatch_uid="ops.erp_called")
        events.erp_paced.connect(metrics.erp_paced, dispatch_uid="ops.erp_paced")
