"""The header badge and the alerts page (S7.5): unread count on every page, polled
cheaply, read and dismissed per person, each alert linking to the page with the problem.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import translation

from alerts import rules
from alerts.models import Alert, AlertRecipient
from core.live import STOP_POLLING

Kind = Alert.Kind
BADGE = reverse("alert_badge")
PAGE = reverse("alert_list")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def failing_record(org, n: int = 1, error: str = "Period is closed for 2026-03-01") -> Alert:
    alert = rules.open_alert(
        org.pk,
        Kind.RECORD_FAILING,
        {
            "reference": f"VH-{org.pk}-{n}",
            "record_kind": "honorarium",
            "attempts": 3,
            "error": error,
        },
        key=rules.record_key(n),
    )
    assert alert is not None
    return alert


def auth_failed(org) -> Alert:
    alert = rules.open_alert(org.pk, Kind.AUTHENTICATION_FAILED, {"error": "Token expired"})
    assert alert is not None
    return alert


@pytest.mark.parametrize(
    "page", ["organization_home", "failed_records", "sync_history", "alert_list"]
)
def test_s7_5_every_page_shows_the_unread_count_in_the_header(org, org_admin, page):
    failing_record(org, 1)
    failing_record(org, 2)
    url = reverse(page, args=[org.slug]) if page != "alert_list" else PAGE

    html = client_for(org_admin).get(url).content.decode()

    assert 'aria-label="Alerts: 2 unread"' in html
    assert f'hx-get="{BADGE}?v=2"' in html
    assert '<span class="alert-count">2</span>' in html


def test_s7_5_the_badge_answers_204_while_the_count_holds_with_one_alert_query(org, org_admin):
    failing_record(org)
    client = client_for(org_admin)

    with CaptureQueriesContext(connection) as queries:
        response = client.get(BADGE, {"v": "1"}, headers={"HX-Request": "true"})

    assert response.status_code == 204 and response.content == b""
    counted = [q["sql"] for q in queries if "alerts_" in q["sql"]]
    assert len(counted) == 1, counted
    assert counted[0].startswith("SELECT COUNT(*)")
    assert "JOIN" not in counted[0]  # one partial index, no join to the alerts


def test_s7_5_when_the_count_rises_the_badge_is_swapped_and_announced(org, org_admin):
    client = client_for(org_admin)
    failing_record(org)

    response = client.get(BADGE, {"v": "0"}, headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    assert 'aria-label="Alerts: 1 unread"' in html
    assert f'hx-get="{BADGE}?v=1"' in html
    assert '<div id="announcer" hx-swap-oob="innerHTML">' in html
    assert "New alert for Blindeforbundet: Record keeps failing. Alerts: 1 unread." in html


def test_s7_5_when_the_count_falls_the_badge_changes_without_an_announcement(org, org_admin):
    client = client_for(org_admin)

    html = client.get(BADGE, {"v": "3"}, headers={"HX-Request": "true"}).content.decode()

    assert 'aria-label="Alerts: 0 unread"' in html
    assert "announcer" not in html


def test_a_badge_polled_after_logging_out_stops_polling(db):
    response = Client().get(BADGE, {"v": "2"}, headers={"HX-Request": "true"})

    assert response.status_code == STOP_POLLING


def test_s7_5_the_page_lists_open_alerts_first_newest_first_and_resolved_ones_as_resolved(
    org, org_admin
):
    with time_machine.travel(datetime(2026, 3, 1, 9, 0, tzinfo=UTC), tick=False):
        older = failing_record(org, 1)
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=UTC), tick=False):
        resolved = failing_record(org, 2, error="Unknown account 9999")
        rules.resolve([org.pk], Kind.RECORD_FAILING, keys=[rules.record_key(2)])
    with time_machine.travel(datetime(2026, 3, 3, 9, 0, tzinfo=UTC), tick=False):
        newer = auth_failed(org)

    html = client_for(org_admin).get(PAGE).content.decode()

    positions = [html.index(f'id="alert-{alert.pk}"') for alert in (newer, older, resolved)]
    assert positions == sorted(positions)
    resolved_item = html[positions[2] :]
    assert "Resolved" in resolved_item and "Unknown account 9999" in resolved_item
    assert "Honorarium VH-" in html and "failed 3 attempts in a row" in html
    assert "Last error: Period is closed for 2026-03-01" in html


def test_s7_5_each_alert_links_to_the_page_that_shows_the_problem(org, org_admin):
    failing_record(org)
    auth_failed(org)

    html = client_for(org_admin).get(PAGE).content.decode()

    failed = reverse("failed_records", args=[org.slug])
    settings_page = reverse("integration_settings", args=[org.slug])
    assert f'href="{failed}">Open the failed records' in html
    assert f'href="{settings_page}">Open the connection settings' in html


def test_s7_5_mark_as_read_without_javascript_returns_to_the_page_and_the_count_drops(
    org, org_admin
):
    alert = failing_record(org)
    client = client_for(org_admin)

    response = client.post(reverse("alert_mark_read", args=[alert.pk]))

    assert response.status_code == 302 and response["Location"] == PAGE
    html = client.get(PAGE).content.decode()
    assert 'aria-label="Alerts: 0 unread"' in html
    assert "Mark as read" not in html  # read already; Dismiss is still offered
    assert "Dismiss" in html


def test_s7_5_mark_as_read_with_htmx_swaps_the_item_and_the_header_badge(org, org_admin):
    alert = failing_record(org)
    failing_record(org, 2)

    response = client_for(org_admin).post(
        reverse("alert_mark_read", args=[alert.pk]), headers={"HX-Request": "true"}
    )

    html = response.content.decode()
    assert html.count(f'id="alert-{alert.pk}"') == 1
    assert "Mark as read" not in html.split('id="alert-badge"')[0]
    assert 'id="alert-badge" hx-swap-oob="true"' in html
    assert 'aria-label="Alerts: 1 unread"' in html
    assert "autofocus" in html  # focus stays on the item's remaining button


def test_s7_5_a_dismissed_alert_leaves_the_page(org, org_admin):
    alert = failing_record(org, error="Gone soon")
    client = client_for(org_admin)

    htmx = client.post(reverse("alert_dismiss", args=[alert.pk]), headers={"HX-Request": "true"})

    assert "Alert dismissed." in htmx.content.decode()
    assert 'aria-label="Alerts: 0 unread"' in htmx.content.decode()
    html = client.get(PAGE).content.decode()
    assert "Gone soon" not in html
    assert "No alerts." in html


def test_s7_5_reading_needs_the_csrf_token(org, org_admin):
    alert = failing_record(org)
    client = Client(enforce_csrf_checks=True)
    client.force_login(org_admin)

    response = client.post(reverse("alert_mark_read", args=[alert.pk]))

    assert response.status_code == 403
    assert AlertRecipient.objects.get(alert=alert).read_at is None


def test_reading_someone_elses_alert_is_404_and_changes_nothing(org, other_org, other_admin):
    alert = failing_record(org)  # addressed to the global admins: org has no admin here

    response = client_for(other_admin).post(reverse("alert_dismiss", args=[alert.pk]))

    assert response.status_code == 404
    assert not AlertRecipient.objects.filter(dismissed_at__isnull=False).exists()


def test_an_auditor_sees_an_empty_alerts_page(org, org_admin, auditor):
    failing_record(org)

    response = client_for(auditor).get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    assert "No alerts." in html and "Period is closed" not in html
    assert 'aria-label="Alerts: 0 unread"' in html


def test_other_organizations_alerts_never_show(org, other_org, org_admin, other_admin):
    failing_record(other_org, error="HLF's secret trouble")

    html = client_for(org_admin).get(PAGE).content.decode()

    assert "HLF's secret trouble" not in html and "HLF" not in html
    assert 'aria-label="Alerts: 0 unread"' in html


def test_s7_5_a_norwegian_reader_gets_the_badge_and_the_alert_in_norwegian(org, org_admin):
    auth_failed(org)

    # The middleware leaves the request's language active in this thread: take it back after.
    with translation.override(settings.LANGUAGE_CODE):
        response = client_for(org_admin).get(PAGE, headers={"Accept-Language": "nb"})

    html = response.content.decode()

    assert 'aria-label="Varsler: 1 uleste"' in html
    assert "Påloggingsopplysninger avvist" in html
    assert "Åpne tilkoblingsinnstillingene" in html and "Merk som lest" in html
    assert "Token expired" in html  # the accounting system's own words stay as it said them
