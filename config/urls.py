from functools import cache

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from django.views.decorators.http import require_GET

from accounting_sync.views import api as sync_api
from accounting_sync.views import failed as sync_failed
from accounting_sync.views import history as sync_history
from accounting_sync.views import home as sync_views
from accounting_sync.views import overview as sync_overview
from alerts import views as alert_views
from core import live
from integrations import schedule_views
from integrations import views as integration_views
from ops import views as ops_views
from organizations import views as organization_views


@cache
def _favicon_bytes() -> bytes:
    return (settings.BASE_DIR / "static" / "img" / "favicon.svg").read_bytes()


@require_GET
@live.poll  # fetched by the browser, not asked for by the person: no sign of activity
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask for /favicon.ico whatever the page links: answer with the icon itself,
    not a 404 in every log (the pages link the same SVG under /static/)."""
    response = HttpResponse(_favicon_bytes(), content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response


# Every URL here is listed in tests/test_access_matrix.py with who may use it.
urlpatterns = [
    path("", organization_views.home, name="home"),
    path("favicon.ico", favicon, name="favicon"),
    # For machines (ops/views.py); ops.middleware.ProbeMiddleware answers them first.
    path("healthz", ops_views.healthz, name="healthz"),
    path("readyz", ops_views.readyz, name="readyz"),
    path("metrics", ops_views.metrics_view, name="metrics"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("orgs/", sync_overview.overview, name="overview"),
    # Not under orgs/: no organization's slug can shadow it.
    path("overview/live/", sync_overview.overview_live, name="overview_live"),
    path("orgs/switch/", organization_views.switch_organization, name="switch_organization"),
    path("orgs/<slug:slug>/", sync_views.organization_home, name="organization_home"),
    path("orgs/<slug:slug>/api-keys/", organization_views.api_keys, name="api_keys"),
    path(
        "orgs/<slug:slug>/integration/",
        integration_views.integration_settings,
        name="integration_settings",
    ),
    path(
        "orgs/<slug:slug>/integration/connection/",
        integration_views.integration_connection,
        name="integration_connection",
    ),
    path(
        "orgs/<slug:slug>/integration/test/",
        integration_views.integration_test,
        name="integration_test",
    ),
    path(
        "orgs/<slug:slug>/integration/toggle/",
        integration_views.integration_toggle,
        name="integration_toggle",
    ),
    path(
        "orgs/<slug:slug>/integration/mappings/",
        integration_views.integration_mappings,
        name="integration_mappings",
    ),
    path(
        "orgs/<slug:slug>/integration/schedule/",
        schedule_views.integration_schedule,
        name="integration_schedule",
    ),
    path(
        "orgs/<slug:slug>/integration/schedule/preview/",
        schedule_views.integration_schedule_preview,
        name="integration_schedule_preview",
    ),
    path("orgs/<slug:slug>/runs/", sync_history.sync_history, name="sync_history"),
    path("orgs/<slug:slug>/live/", sync_views.dashboard_live, name="dashboard_live"),
    path("orgs/<slug:slug>/sync/", sync_views.trigger_sync, name="trigger_sync"),
    path("orgs/<slug:slug>/retry/", sync_failed.retry_records, name="retry_records"),
    path("orgs/<slug:slug>/failed/", sync_failed.failed_records, name="failed_records"),
    path(
        "orgs/<slug:slug>/failed/live/",
        sync_failed.failed_records_live,
        name="failed_records_live",
    ),
    path("api/v1/records", sync_api.receive_records, name="api_records"),
    # Django's set_language, which also keeps a logged-in person's choice for their e-mails.
    path("i18n/setlang/", alert_views.choose_language, name="set_language"),
    path("", include("accounts.urls")),
    path("", include("audit.urls")),
    path("", include("alerts.urls")),
    path("", include("reconciliation.urls")),
    path("admin/", admin.site.urls),
]
