"""The reconciliation pages (issue 15). Every URL here is in tests/routes_reconciliation.py."""

from __future__ import annotations

from django.urls import path

from reconciliation import views

urlpatterns = [
    # Named `reconciliation`: alerts link to it by this name with the organization's slug.
    path("orgs/<slug:slug>/reconciliation/", views.reconciliation, name="reconciliation"),
    path(
        "orgs/<slug:slug>/reconciliation/live/",
        views.reconciliation_live,
        name="reconciliation_live",
    ),
    path(
        "orgs/<slug:slug>/reconciliation/run/", views.reconciliation_run, name="reconciliation_run"
    ),
    path(
        "orgs/<slug:slug>/reconciliation/act/", views.reconciliation_act, name="reconciliation_act"
    ),
    path(
        "orgs/<slug:slug>/reconciliation/export.<str:fmt>",
        views.reconciliation_export,
        name="reconciliation_export",
    ),
]
