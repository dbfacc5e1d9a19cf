from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    verbose_name = "Alerts"

    def ready(self) -> None:
        from alerts import hooks
        from core import events

        # The engine sends these (core/events.py); it never imports the alerts.
        events.attempts_recorded.connect(hooks.attempts_recorded, dispatch_uid="alerts.attempts")
        events.run_ended.connect(hooks.run_ended, dispatch_uid="alerts.run_ended")
        events.event_recorded.connect(hooks.event_recorded, dispatch_uid="alerts.event")
