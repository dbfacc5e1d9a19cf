"""Issue 6 item 4: the administrative trail, its pages and filters, as the server answers them."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django.test import Client
from django.urls import reverse

from audit.models import AdminAction
from tests.test_integration_settings import TOKEN, XLEDGER_FORM

OSLO = ZoneInfo("Europe/Oslo")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def trail_url(org) -> str:
    return reverse("admin_trail", args=[org.slug])


def actions(org, count: int, actor=None, kind=AdminAction.Kind.CONNECTION_TESTED, **detail):
    return [AdminAction.record(actor, org, kind, n=n, **detail) for n in range(count)]


def at(moment: datetime, org, actor, kind: str, **detail) -> AdminAction:
    """An action recorded at a given time (the chain hashes the time it is given)."""
    action = AdminAction(
        organization=org,
        actor=actor,
        actor_username=actor.username if actor else "",
        kind=kind,
        detail=detail,
        created_at=moment,
    )
    AdminAction.objects.bulk_create([action])
    return action


def test_trail_newest_first_fifty_a_page_with_older_and_newer_links(org, org_admin) -> None:
    made = actions(org, 60, org_admin)[::-1]  # newest first
    client = client_for(org_admin)

    first = client.get(trail_url(org)).context
    assert [a.pk for a in first["rows"]] == [a.pk for a in made[:50]]
    assert first["newer"] is None and first["older"] == made[49].pk

    second = client.get(trail_url(org), {"before": first["older"]}).context
    assert [a.pk for a in second["rows"]] == [a.pk for a in made[50:]]
    assert second["older"] is None
    back = client.get(trail_url(org), {"after": second["newer"]}).context
    assert [a.pk for a in back["rows"]] == [a.pk for a in made[:50]]


def test_trail_each_entry_shows_who_when_what_and_readable_details(org, org_admin) -> None:
    moment = datetime(2026, 3, 2, 9, 15, 30, tzinfo=OSLO)
    at(
        moment,
        org,
        org_admin,
        AdminAction.Kind.MAPPINGS_CHANGED,
        changes={"travel": {"from": ["7130", "300"], "to": ["7140", "300"]}},
    )

    page = client_for(org_admin).get(trail_url(org)).content.decode()

    assert "2026-03-02 09:15:30" in page
    assert "own-admin" in page and "Mappings changed" in page
    assert "travel: 7130 / 300 → 7140 / 300" in page


def test_trail_credentials_changes_name_the_field_never_the_value(org, org_admin, auditor) -> None:
    admin = client_for(org_admin)
    admin.post(reverse("integration_settings", args=[org.slug]), XLEDGER_FORM)

    page = client_for(auditor).get(trail_url(org)).content.decode()

    assert "Credentials changed" in page and "API token" in page  # named, in words
    assert "Connection settings changed" in page
    assert TOKEN not in page


def test_trail_names_a_retry_apart_from_a_sync_and_filters_it(org, org_admin) -> None:
    sync = AdminAction.record(
        org_admin, org, AdminAction.Kind.SYNC_TRIGGERED, run=1, trigger="manual", records=0
    )
    retry = AdminAction.record(
        org_admin, org, AdminAction.Kind.SYNC_TRIGGERED, run=2, trigger="retry", records=3
    )
    client = client_for(org_admin)

    page = client.get(trail_url(org))
    assert "Retry requested" in page.content.decode()
    retries = client.get(trail_url(org), {"kind": "retry_requested"}).context["rows"]
    assert [a.pk for a in retries] == [retry.pk]
    syncs = client.get(trail_url(org), {"kind": "sync_triggered"}).context["rows"]
    assert [a.pk for a in syncs] == [sync.pk]


def test_trail_filters_by_date_range_action_and_person_and_keeps_them_in_the_links(
    org, org_admin, auditor
) -> None:
    march = datetime(2026, 3, 2, 23, 30, tzinfo=OSLO)
    at(datetime(2026, 3, 1, 23, 59, tzinfo=OSLO), org, org_admin, "connection_tested")
    wanted = [at(march, org, org_admin, "connection_tested", n=n) for n in range(55)]
    at(march, org, auditor, "audit_exported", rows=3)
    at(datetime(2026, 3, 3, 0, 0, tzinfo=OSLO), org, org_admin, "connection_tested")
    client = client_for(auditor)
    wanted_filter = {
        "date_from": "2026-03-02",
        "date_to": "2026-03-02",
        "kind": "connection_tested",
        "actor": "own-admin",
    }

    first = client.get(trail_url(org), wanted_filter)
    older = client.get(trail_url(org), {**wanted_filter, "before": first.context["older"]})

    shown = [a.pk for a in first.context["rows"]] + [a.pk for a in older.context["rows"]]
    assert shown == [a.pk for a in reversed(wanted)]
    assert "kind=connection_tested" in first.content.decode().split('class="pagination"')[1]
    by_person = client.get(trail_url(org), {"actor": "auditor"}).context["rows"]
    assert [a.kind for a in by_person] == ["audit_exported"]


def test_trail_an_org_admin_sees_only_their_organization(org, other_org, org_admin) -> None:
    actions(other_org, 2, kind=AdminAction.Kind.API_KEY_ISSUED, prefix="theirs")
    mine = actions(org, 1, org_admin)
    client = client_for(org_admin)

    rows = client.get(trail_url(org)).context["rows"]
    assert [a.pk for a in rows] == [mine[0].pk]
    assert client.get(trail_url(other_org)).status_code == 404
    assert client.get(reverse("global_admin_trail")).status_code == 403


def test_trail_global_admins_see_every_organization_and_the_platform(
    org, other_org, global_admin
) -> None:
    actions(org, 2)
    theirs = actions(other_org, 1)
    platform = AdminAction.record(None, None, AdminAction.Kind.API_KEY_ISSUED, via="command line")
    client = client_for(global_admin)

    everything = client.get(reverse("global_admin_trail"))
    assert len(everything.context["rows"]) == 4
    assert platform.pk in {a.pk for a in everything.context["rows"]}
    text = everything.content.decode()
    assert "Platform" in text and "System (command line or a scheduled task)" in text
    only_hlf = client.get(reverse("global_admin_trail"), {"organization": "hlf"})
    assert [a.pk for a in only_hlf.context["rows"]] == [theirs[0].pk]


def test_trail_the_person_filter_lists_only_people_in_this_trail(
    org, other_org, org_admin, other_admin
) -> None:
    actions(org, 1, org_admin)
    actions(other_org, 1, other_admin)

    form = client_for(org_admin).get(trail_url(org)).context["filter"].form
    assert [name for name, _label in form.fields["actor"].choices] == ["", "own-admin"]


def test_trail_is_linked_from_the_audit_log(org, auditor, global_admin) -> None:
    own = client_for(auditor).get(reverse("audit_log", args=[org.slug])).content.decode()
    assert trail_url(org) in own
    every = client_for(global_admin).get(reverse("global_audit_log")).content.decode()
    assert reverse("global_admin_trail") in every


def test_trail_a_deep_page_costs_the_same_queries_as_the_first(org, org_admin) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    made = actions(org, 120, org_admin)
    client = client_for(org_admin)

    def queries(params) -> int:
        with CaptureQueriesContext(connection) as captured:
            client.get(trail_url(org), params)
        return len(captured)

    assert queries({}) == queries({"before": made[30].pk})
