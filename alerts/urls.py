"""The alerts pages (S7.5). Every URL here is listed in tests/routes_alerts.py."""

from __future__ import annotations

from django.urls import path

from alerts import views

urlpatterns = [
    path("alerts/", views.alert_list, name="alert_list"),
    path("alerts/badge/", views.alert_badge, name="alert_badge"),
    path("alerts/settings/", views.alert_settings, name="alert_settings"),
    path("alerts/<int:alert_id>/read/", views.mark_read, name="alert_mark_read"),
    path("alerts/<int:alert_id>/dismiss/", views.dismiss, name="alert_dismiss"),
]
