"""Issue 15 items 3 and 5: the reconciliation page, its live part, actions and exports.

The ERP's side is a stand-in ledger (tests/reconciliation_fakes.py); the engine's reading,
classification, actions, access rules and the trail are the real ones.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from audit.models import AdminAction
from core import chain
from core.events import TrailKind
from integrations.clients.base import ConnectorError, Outcome
from integrations.models import Integration
from integrations.notes import NoteCode, note
from organizations.models import Organization
from reconciliation import engine
from reconciliation.forms import previous_month
from reconciliation.models import Item, Reconciliation
from tests.factories import make_records
from tests.reconciliation_fakes import Ledger, entry, ready_integration, set_state, stand_in, stray

State = FinancialRecord.State
Klass = Item.Klass


@pytest.fixture
def ledger(monkeypatch) -> Ledger:
    return stand_in(monkeypatch)


@pytest.fixture
def ready(org) -> Integration:
    return ready_integration(org)


def yesterday() -> date:
    return timezone.localdate() - timedelta(days=1)


def page_url(org: Organization, **query: object) -> str:
    url = reverse("reconciliation", kwargs={"slug": org.slug})
    return f"{url}?{'&'.join(f'{k}={v}' for k, v in query.items())}" if query else url


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def reconcile(org: Organization, user=None) -> Reconciliation:
    queued = engine.request(org, yesterday(), yesterday(), user=user)
    done = engine.run(queued.pk)
    assert done is not None
    return done


def text(html: str) -> str:
    html = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", html, flags=re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


@pytest.fixture
def findings(org, ready, ledger) -> dict[str, FinancialRecord]:
    """One reading with a record of each kind the page shows."""
    matched, missing, different, there = make_records(org, 4)
    for record in (matched, missing, different):
        set_state(record, State.SYNCED)
    ledger.entries_held = [
        entry(matched),
        entry(different, amount=Decimal("999.00"), cost_center="400"),
        entry(there),
        stray(org, "999999", yesterday()),
    ]
    return {"matched": matched, "missing": missing, "different": different, "there": there}


# --- access ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_issue15_item3_who_may_see_run_and_export(
    org, other_org, org_admin, auditor, other_admin, global_admin, ready, ledger
):
    done = reconcile(org)
    export = reverse("reconciliation_export", kwargs={"slug": org.slug, "fmt": "csv"})
    run = reverse("reconciliation_run", kwargs={"slug": org.slug})
    act = reverse("reconciliation_act", kwargs={"slug": org.slug})
    for user in (org_admin, auditor, global_admin):
        client = client_for(user)
        assert client.get(page_url(org)).status_code == 200
        assert client.get(export, {"run": done.pk}).status_code == 200
    # Another organization's admin cannot learn it exists; anonymous people log in first.
    stranger = client_for(other_admin)
    assert stranger.get(page_url(org)).status_code == 404
    assert stranger.get(export, {"run": done.pk}).status_code == 404
    assert stranger.post(run, {"start": yesterday(), "end": yesterday()}).status_code == 404
    anonymous = Client()
    for response in (anonymous.get(page_url(org)), anonymous.get(export, {"run": done.pk})):
        assert response.status_code == 302 and response["Location"].startswith(reverse("login"))
    # A reading of another organization is not found through this one's page.
    assert client_for(global_admin).get(page_url(other_org, run=done.pk)).status_code == 404
    # Auditors run and export; acting on findings is for admins.
    assert client_for(auditor).post(act, {"item": "1", "action": "accept"}).status_code == 403


@pytest.mark.django_db
def test_issue15_item3_an_auditor_runs_one_and_it_is_in_the_trail(
    org, auditor, ready, ledger, django_capture_on_commit_callbacks, monkeypatch
):
    queued: list[int] = []
    monkeypatch.setattr(
        "reconciliation.tasks.run_reconciliation.delay", lambda pk: queued.append(pk)
    )
    client = client_for(auditor)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("reconciliation_run", kwargs={"slug": org.slug}),
            {"start": yesterday(), "end": yesterday()},
        )
    reading = Reconciliation.objects.get()
    assert response.status_code == 302
    assert response["Location"] == page_url(org, run=reading.pk, started=1)
    assert queued == [reading.pk]  # handed to the worker once the transaction committed
    assert (reading.requested_by, reading.trigger) == (auditor, Reconciliation.Trigger.MANUAL)
    trail = AdminAction.objects.get(kind=TrailKind.RECONCILIATION_REQUESTED)
    assert trail.actor_username == auditor.username
    assert trail.detail == {
        "reconciliation": reading.pk,
        "period": f"{yesterday().isoformat()}..{yesterday().isoformat()}",
    }
    page = client.get(response["Location"]).content.decode()
    assert 'id="recon-progress"' in page and "data-focus-on-load" in page
    assert "Reconciliation started for posting dates" in page


# --- the run form ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_issue15_item3_the_form_defaults_to_the_previous_calendar_month(org, org_admin, ready):
    assert previous_month(date(2026, 3, 15)) == (date(2026, 2, 1), date(2026, 2, 28))
    assert previous_month(date(2026, 1, 1)) == (date(2025, 12, 1), date(2025, 12, 31))
    page = client_for(org_admin).get(page_url(org)).content.decode()
    start, end = previous_month(timezone.localdate())
    assert f'value="{start.isoformat()}"' in page and f'value="{end.isoformat()}"' in page
    assert "No reconciliation has run yet." in page


@pytest.mark.parametrize(
    ("start", "end", "said"),
    [
        (1, 2, "The end date is before the start date."),
        (-1, -3, "The end date is in the future"),
        (400, 1, "A reconciliation covers at most 366 days"),
        (None, 1, "Enter a valid date."),
    ],
)
@pytest.mark.django_db
def test_issue15_item3_a_period_that_cannot_be_read_is_refused_with_a_clear_message(
    org, org_admin, ready, ledger, start, end, said
):
    today = timezone.localdate()
    form = {
        "start": "1st of May" if start is None else (today - timedelta(days=start)).isoformat(),
        "end": (today - timedelta(days=end)).isoformat(),
    }
    response = client_for(org_admin).post(
        reverse("reconciliation_run", kwargs={"slug": org.slug}), form
    )
    assert response.status_code == 200
    assert said in text(response.content.decode())
    assert 'role="alert"' in response.content.decode()
    assert not Reconciliation.objects.exists()
    assert not AdminAction.objects.filter(kind=TrailKind.RECONCILIATION_REQUESTED).exists()


@pytest.mark.django_db
def test_issue15_item3_one_already_running_is_refused_with_the_reason(org, org_admin, ready):
    running = engine.request(org, yesterday(), yesterday())
    client = client_for(org_admin)
    page = client.get(page_url(org)).content.decode()
    assert "A reconciliation is already running" in text(page)
    response = client.post(
        reverse("reconciliation_run", kwargs={"slug": org.slug}),
        {"start": yesterday(), "end": yesterday()},
    )
    assert response.status_code == 200
    said = text(response.content.decode())
    assert (
        f"A reconciliation is already running (posting dates {running.period_start.isoformat()}"
        in said
    )
    assert Reconciliation.objects.count() == 1
    assert not AdminAction.objects.filter(kind=TrailKind.RECONCILIATION_REQUESTED).exists()


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ({"enabled": False}, "The connector is disabled"),
        ({"connection_verified_at": None, "enabled": False}, "has not been tested"),
    ],
)
@pytest.mark.django_db
def test_issue15_item3_no_enabled_tested_integration_is_refused_with_the_reason(
    org, auditor, ready, change, said
):
    Integration.objects.filter(organization=org).update(**change)
    client = client_for(auditor)
    page = client.get(page_url(org)).content.decode()
    assert said in text(page)
    assert re.search(r'id="run-reconciliation"[^>]*disabled', page)
    response = client.post(
        reverse("reconciliation_run", kwargs={"slug": org.slug}),
        {"start": yesterday(), "end": yesterday()},
    )
    assert said in text(response.content.decode())
    assert not Reconciliation.objects.exists()


@pytest.mark.django_db
def test_issue15_item3_an_organization_without_an_accounting_system_is_refused(org, org_admin):
    Integration.objects.filter(organization=org).delete()
    response = client_for(org_admin).post(
        reverse("reconciliation_run", kwargs={"slug": org.slug}),
        {"start": yesterday(), "end": yesterday()},
    )
    assert "No accounting system is set up" in text(response.content.decode())
    assert not Reconciliation.objects.exists()


# --- what a reading found --------------------------------------------------------------------


@pytest.mark.django_db
def test_issue15_item3_counts_per_class_link_to_their_items_with_both_sides(org, auditor, findings):
    done = reconcile(org)
    client = client_for(auditor)
    page = client.get(page_url(org)).content.decode()  # the latest is shown by default
    said = text(page)
    assert "Done: 4 items to look at." in said  # missing, different, there, unexplained
    for klass in (Klass.MATCHED, Klass.MISSING_THERE, Klass.DIFFERENT, Klass.UNEXPLAINED):
        assert f'href="?run={done.pk}&amp;klass={klass}"' in page
    assert "Sent here, missing there: 1" in said
    # Both sides, the differing ones said in words as well as shown.
    row = _row(page, done.items.get(reference=findings["different"].reference))
    assert row.count("Differs") == 2  # amount and cost center
    assert "999.00" in row and f"{findings['different'].amount:.2f}" in row
    assert "400" in row and "300" in row
    assert "erp-" in row and "Posted entry" in row
    assert f"?reference={findings['different'].reference}" in row  # its audit entries
    matched = _row(page, done.items.get(reference=findings["matched"].reference))
    assert "Differs" not in matched
    missing = _row(page, done.items.get(reference=findings["missing"].reference))
    assert "Not there" in missing


def _row(page: str, item: Item) -> str:
    found = re.search(rf'<tr id="item-{item.pk}">(.*?)</tr>', page, re.S)
    assert found, f"item {item.reference} is not on the page"
    return found.group(1)


@pytest.mark.django_db
def test_issue15_item3_filters_by_class_and_reference(org, auditor, findings):
    done = reconcile(org)
    client = client_for(auditor)
    different = client.get(page_url(org, run=done.pk, klass=Klass.DIFFERENT)).content.decode()
    assert re.findall(r'<tr id="item-(\d+)">', different) == [
        str(done.items.get(klass=Klass.DIFFERENT).pk)
    ]
    assert 'aria-current="true">Different: 1' in different
    wanted = findings["there"].reference
    searched = client.get(page_url(org, run=done.pk, q=wanted.lower())).content.decode()
    assert re.findall(r'<tr id="item-(\d+)">', searched) == [
        str(done.items.get(reference=wanted).pk)
    ]
    assert "1 item." in text(searched)
    nonsense = client.get(page_url(org, run=done.pk, klass="nonsense")).content.decode()
    assert len(re.findall(r'<tr id="item-', nonsense)) == done.items.count()  # ignored
    assert client.get(page_url(org, run="x")).status_code == 404


@pytest.mark.django_db
def test_issue15_item3_every_reading_is_kept_and_an_older_one_can_be_shown(
    org, org_admin, findings, ledger
):
    first = reconcile(org, user=org_admin)
    ledger.entries_held = []
    second = reconcile(org)
    page = client_for(org_admin).get(page_url(org, run=first.pk)).content.decode()
    assert f'id="run-{first.pk}"' in page and f'id="run-{second.pk}"' in page
    assert f'id="show-run-{first.pk}" aria-current="true"' in page
    assert org_admin.username in _between(page, f'id="run-{first.pk}"', "</tr>")
    assert "Different: 1" in text(page)


def _between(page: str, start: str, end: str) -> str:
    return page[page.index(start) : page.index(end, page.index(start))]


@pytest.mark.django_db
def test_issue15_item3_a_failed_reading_shows_its_reason_in_our_words_and_the_erps(
    org, auditor, ready, ledger
):
    ledger.fail = ConnectorError(
        Outcome.TRANSIENT,
        note(NoteCode.ADMIN_ERP_PROBLEM, erp="Xledger", status=503),
        erp_words="Service Unavailable",
    )
    done = reconcile(org)
    assert done.status == Reconciliation.Status.FAILED
    from integrations.notes import words

    said = text(client_for(auditor).get(page_url(org)).content.decode())
    assert words(done.failure_note) in said
    assert "Service Unavailable" in said
    assert "The accounting system could not be read:" in said


@pytest.mark.django_db
def test_issue15_item3_the_page_costs_the_same_queries_for_5_or_200_items(
    org, org_admin, ready, ledger
):
    def queries(done: Reconciliation) -> int:
        client = client_for(org_admin)
        client.get(page_url(org, run=done.pk))  # the session's first read aside
        with CaptureQueriesContext(connection) as captured:
            assert client.get(page_url(org, run=done.pk)).status_code == 200
        return len(captured)

    few = make_records(org, 5)
    for record in few:
        set_state(record, State.SYNCED)
    ledger.entries_held = [entry(r, amount=Decimal("1.00")) for r in few]
    small = reconcile(org, user=org_admin)
    Item.objects.filter(reconciliation=small).update(resolved_by=org_admin)
    counted = queries(small)

    many = [r for r in make_records(org, 195, start=5) if r not in few]
    ledger.entries_held += [entry(r, account="9999") for r in many]
    big = reconcile(org, user=org_admin)
    Item.objects.filter(reconciliation=big).update(resolved_by=org_admin)
    assert big.items.count() == 200
    assert queries(big) == counted
    print(f"reconciliation page: {counted} queries for 5 or 200 items")


# --- the live part ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_issue15_item3_the_live_part_answers_204_until_progress_then_the_result_once(
    org, auditor, ready, findings
):
    queued = engine.request(org, yesterday(), yesterday(), user=auditor)
    client = client_for(auditor)
    page = client.get(page_url(org)).content.decode()
    poll = re.search(r'id="recon-live"[^>]*hx-get="([^"]+)"', page)
    assert poll, "a running reading is polled"
    url = poll.group(1).replace("&amp;", "&")
    with CaptureQueriesContext(connection) as unchanged:
        assert client.get(url).status_code == 204  # nothing moved
    # The session and user, the organization and the viewer's role, the reading: no render.
    assert len(unchanged) <= 5, [q["sql"] for q in unchanged]
    Reconciliation.objects.filter(pk=queued.pk).update(
        status="running", entries_read=2, pages_read=1
    )
    moved = client.get(url)
    assert moved.status_code == 200
    assert "2 entries read so far; requests made: 1." in text(moved.content.decode())
    assert 'id="announcer"' not in moved.content.decode()  # progress is not announced
    Reconciliation.objects.filter(pk=queued.pk).update(status="queued")
    engine.run(queued.pk)
    done = client.get(url)
    assert done.status_code == 286  # the result, and no more polling
    body = done.content.decode()
    assert 'id="recon-outcome"' in body and "recon-progress" not in body
    assert "Reconciliation finished: 5 items, 4 to look at." in text(body)
    assert 'hx-swap-oob="innerHTML"' in body


# --- actions (item 5) --------------------------------------------------------------------------


@pytest.mark.django_db
def test_issue15_item5_an_admin_accepts_a_difference_with_a_comment(org, org_admin, findings):
    done = reconcile(org)
    item = done.items.get(klass=Klass.DIFFERENT)
    act = reverse("reconciliation_act", kwargs={"slug": org.slug})
    client = client_for(org_admin)
    refused = client.post(act, {"item": item.pk, "action": "accept", "comment": "  "}, follow=True)
    assert "Write why the difference is accepted." in text(refused.content.decode())
    item.refresh_from_db()
    assert item.resolution == Item.Resolution.NONE

    response = client.post(
        act,
        {"item": item.pk, "action": "accept", "comment": "Moved on purpose", "klass": "different"},
    )
    assert (
        response["Location"]
        == page_url(org, run=done.pk, klass="different", page="").replace("&page=", "")
        + f"#item-{item.pk}"
    )
    page = client.get(response["Location"]).content.decode()
    row = text(_row(page, item))
    assert "Difference accepted, by own-admin" in row and "Comment: Moved on purpose" in row
    assert AdminAction.objects.get(kind=TrailKind.DIFFERENCE_ACCEPTED).detail["comment"] == (
        "Moved on purpose"
    )
    again = client.post(act, {"item": item.pk, "action": "accept", "comment": "x"}, follow=True)
    assert "Someone has already resolved this item." in text(again.content.decode())


@pytest.mark.django_db
def test_issue15_item5_an_admin_sends_a_missing_record_again(org, org_admin, findings):
    done = reconcile(org)
    # The reading handed the record there-not-here to a lookup run; let it have ended.
    SyncRun.objects.update(status=SyncRun.Status.SUCCEEDED, finished_at=timezone.now())
    missing = done.items.get(klass=Klass.MISSING_THERE)
    client = client_for(org_admin)
    page = client.get(page_url(org)).content.decode()
    assert f'id="resend-{missing.pk}"' in page
    assert f'id="resend-{done.items.get(klass=Klass.DIFFERENT).pk}"' not in page
    act = reverse("reconciliation_act", kwargs={"slug": org.slug})
    response = client.post(act, {"item": missing.pk, "action": "resend"}, follow=True)
    said = text(response.content.decode())
    assert f"{missing.reference} is sent again" in said
    assert "Sent again, by own-admin" in said
    assert AdminAction.objects.filter(kind=TrailKind.RECORD_RESENT).count() == 1
    # A difference cannot be sent again: the refusal's code, in words.
    different = done.items.get(klass=Klass.DIFFERENT)
    refused = client.post(act, {"item": different.pk, "action": "resend"}, follow=True)
    assert "Only a record missing in the accounting system can be sent again." in text(
        refused.content.decode()
    )
    # Another organization's item, or none, is not found here.
    nothing = client.post(act, {"item": "999999", "action": "resend"}, follow=True)
    assert "There is no such item" in text(nothing.content.decode())


@pytest.mark.django_db
def test_issue15_item5_auditors_see_no_actions(org, auditor, findings):
    reconcile(org)
    page = client_for(auditor).get(page_url(org)).content.decode()
    assert "Send again" not in page and "Accept…" not in page
    assert "acting on what they find is for admins" in text(page)


# --- exports ---------------------------------------------------------------------------------


HOSTILE = '=HYPERLINK("http://evil.example","x")'


@pytest.fixture
def hostile(org, org_admin, findings) -> Reconciliation:
    """A reading with an unexplained entry whose reference and a comment are formulas."""
    done = reconcile(org, user=org_admin)
    item = done.items.get(klass=Klass.DIFFERENT)
    from reconciliation import actions

    actions.accept(item, org_admin, HOSTILE)
    Item.objects.filter(reconciliation=done, klass=Klass.UNEXPLAINED).update(
        reference="@SUM(1+1)*cmd|' /C calc'!A0"
    )
    Organization.objects.filter(pk=org.pk).update(name="+Blindeforbundet")
    return done


def _export(client: Client, org: Organization, fmt: str, reading: Reconciliation):
    url = reverse("reconciliation_export", kwargs={"slug": org.slug, "fmt": fmt})
    response = client.get(url, {"run": reading.pk})
    assert response.status_code == 200
    return response, b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_issue15_item3_the_csv_export_is_formula_safe_with_its_evidence(org, auditor, hostile):
    response, body = _export(client_for(auditor), org, "csv", hostile)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert body.startswith("\ufeff")
    head, _, table = body.lstrip("\ufeff").partition("\r\n\r\n")
    meta = dict(line.split(";", 1) for line in head.split("\r\n"))
    assert meta["organization"] == "'+Blindeforbundet"  # neutralised, not a formula
    assert meta["period_start"] == meta["period_end"] == yesterday().isoformat()
    assert meta["erp_digest"] == hostile.erp_digest and len(hostile.erp_digest) == 64
    assert meta["attempts_head"] == hostile.attempts_head == chain.head(SyncLog, org.pk)
    assert meta["trail_head"] == hostile.trail_head and len(hostile.trail_head) == 64
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", meta["finished_at"])  # Excel's
    assert meta["rows"] == str(hostile.items.count())
    rows = list(csv.DictReader(io.StringIO(table), delimiter=";"))
    assert len(rows) == hostile.items.count()
    for row in rows:
        for value in row.values():
            assert not value or value[0] not in "=+-@\t\r", value
    accepted = next(row for row in rows if row["resolution"] == "accepted")
    assert accepted["comment"] == "'" + HOSTILE
    assert accepted["ours_amount"].count(",") == 1  # a decimal comma, for Norwegian Excel
    assert accepted["theirs_amount"] == "999,00"
    assert accepted["differences"] == "amount,cost_center"
    assert any(row["reference"].startswith("'@SUM") for row in rows)
    trail = AdminAction.objects.get(kind=TrailKind.RECONCILIATION_EXPORTED)
    assert trail.actor_username == "auditor"
    assert trail.detail == {
        "reconciliation": hostile.pk,
        "period": f"{yesterday().isoformat()}..{yesterday().isoformat()}",
        "format": "csv",
        "rows": hostile.items.count(),
    }


@pytest.mark.django_db
def test_issue15_item3_the_json_export_keeps_values_as_stored_with_the_same_metadata(
    org, org_admin, hostile
):
    _, body = _export(client_for(org_admin), org, "json", hostile)
    document = json.loads(body)
    meta = document["meta"]
    assert meta["organization"] == "+Blindeforbundet"
    assert (meta["period_start"], meta["period_end"]) == (yesterday().isoformat(),) * 2
    assert meta["erp_digest"] == hostile.erp_digest
    assert (meta["attempts_head"], meta["trail_head"]) == (
        hostile.attempts_head,
        hostile.trail_head,
    )
    assert meta["finished_at"].startswith(hostile.finished_at.astimezone().date().isoformat())
    assert meta["counts"] == hostile.counts and meta["rows"] == len(document["rows"])
    accepted = next(row for row in document["rows"] if row["resolution"] == "accepted")
    assert accepted["comment"] == HOSTILE  # untouched
    assert accepted["theirs"]["amount"] == "999.00"
    assert accepted["resolved_by"] == org_admin.username
    assert any(row["reference"].startswith("@SUM") for row in document["rows"])


@pytest.mark.django_db
def test_issue15_item3_a_running_or_unknown_reading_is_not_exported(org, org_admin, ready):
    client = client_for(org_admin)
    url = reverse("reconciliation_export", kwargs={"slug": org.slug, "fmt": "csv"})
    assert client.get(url).status_code == 404  # none yet
    running = engine.request(org, yesterday(), yesterday())
    assert client.get(url, {"run": running.pk}).status_code == 409
    assert client.get(url, {"run": "abc"}).status_code == 404
    assert (
        client.get(
            reverse("reconciliation_export", kwargs={"slug": org.slug, "fmt": "xml"})
        ).status_code
        == 404
    )
    assert not AdminAction.objects.filter(kind=TrailKind.RECONCILIATION_EXPORTED).exists()


# --- the overview's summary (global admins) -------------------------------------------------


def _organizations_with_readings(first: int, last: int) -> None:
    """Organizations whose latest reading is each kind the overview words differently."""
    for n in range(first, last):
        organization = Organization.objects.create(name=f"Org {n:02}", slug=f"org-{n:02}")
        Integration.objects.create(organization=organization, connector="xledger")
        for _older in range(2):  # every reading is kept: only the newest counts
            Reconciliation.objects.create(
                organization=organization,
                connector="xledger",
                period_start=yesterday(),
                period_end=yesterday(),
                trigger="nightly",
                status="done",
                counts={"different": 3},
            )
        kind = n % 4
        latest = Reconciliation.objects.create(
            organization=organization,
            connector="xledger",
            period_start=yesterday(),
            period_end=yesterday(),
            trigger="nightly",
            status=["done", "done", "failed", "running"][kind],
            counts={"matched": 2, "different": 1} if kind == 0 else {"matched": 2},
        )
        if kind == 0:
            Item.objects.create(reconciliation=latest, reference="VH-x-1", klass="different")
            Item.objects.create(
                reconciliation=latest, reference="VH-x-2", klass="matched", resolution=""
            )


def _overview_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("overview")).status_code == 200
    return len(captured)


@pytest.mark.django_db
def test_issue15_item3_the_overview_sums_up_each_organizations_latest_reading(global_admin):
    _organizations_with_readings(0, 5)
    Organization.objects.create(name="Org none", slug="org-none")
    page = client_for(global_admin).get(reverse("overview")).content.decode()
    rows = dict(re.findall(r'<tr id="org-([\w-]+)"(.*?)</tr>', page, re.S))
    assert "1 difference to look at" in text(rows["org-00"])
    assert "Matched" in text(rows["org-01"])
    assert "Reading failed" in text(rows["org-02"])
    assert "Running" in text(rows["org-03"])
    assert "None yet" in text(rows["org-none"])
    url = reverse("reconciliation", args=["org-00"])
    assert f'<a href="{url}" id="reconciliation-org-00"' in rows["org-00"]
    assert "reconciliation of Org 00" in text(rows["org-00"])  # named for a list of links
    assert '<th scope="col">Reconciliation</th>' in page
    # Accepted, the difference is resolved.
    Item.objects.filter(klass="different", reconciliation__organization__slug="org-00").update(
        resolution="accepted"
    )
    page = client_for(global_admin).get(reverse("overview")).content.decode()
    row = re.search(r'<tr id="org-org-00"(.*?)</tr>', page, re.S)
    assert row and "Differences resolved" in text(row[1])


@pytest.mark.django_db
def test_issue15_item3_the_overview_summary_costs_one_query_for_5_or_40_organizations(
    global_admin, monkeypatch
):
    from accounting_sync.views import overview

    client = client_for(global_admin)
    _organizations_with_readings(0, 5)
    _overview_queries(client)  # the session's first read aside
    few = _overview_queries(client)
    with monkeypatch.context() as without:
        without.setattr(overview, "COLUMNS", [])
        assert _overview_queries(client) == few - 1  # the column's one query
    _organizations_with_readings(5, 40)
    assert _overview_queries(client) == few
    print(f"overview: {few} queries for 5 or 40 organizations, 1 of them the reconciliation's")
