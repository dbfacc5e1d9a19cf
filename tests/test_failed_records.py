"""The failed records page (S6.1-S6.6) with the Django client; the engine runs in-process
against the ERP sandbox (`execute_run`), as a worker would run it.

The browser walks the same criteria in tests/test_browser_failed_records.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import override

from accounting_sync.models import FinancialRecord, SyncLog, SyncRun
from accounting_sync.orchestrator import execute_run, start_run
from audit.models import AdminAction
from core import live
from integrations.clients import business_central as bc
from integrations.clients import xledger as xl
from integrations.models import Integration
from tests.factories import configure, ledger_counts, make_records, states, sync

State = FinancialRecord.State
HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture(autouse=True)
def _trust_the_sandbox(erp_sandbox, settings) -> None:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    xl._tokens.clear()
    bc._apps.clear()


def page_url(org) -> str:
    return reverse("failed_records", kwargs={"slug": org.slug})


def live_url(org) -> str:
    return reverse("failed_records_live", kwargs={"slug": org.slug})


def retry_url(org) -> str:
    return reverse("retry_records", kwargs={"slug": org.slug})


def fail(org, erp_sandbox, records: list[FinancialRecord], **faults: Any) -> None:
    """Send `records` once with the sandbox refusing them (503 unless told otherwise)."""
    erp_sandbox.set_faults(**(faults or {"error_rate": 1.0}))
    sync(org, "manual", record_ids=[r.pk for r in records])
    erp_sandbox.set_faults()


def failed_org(org, erp_sandbox, count: int, **changes: Any) -> list[FinancialRecord]:
    configure(org, erp_sandbox, **changes)
    records = make_records(org, count)
    fail(org, erp_sandbox, records)
    assert states(org) == {State.FAILED: count}
    return records


def run_started_by_the_page() -> SyncRun:
    """The run the POST opened, carried out as the worker would."""
    run = SyncRun.objects.get(status=SyncRun.Status.RUNNING)
    finished = execute_run(run.pk, worker="test")
    assert finished is not None
    return finished


def html(response) -> str:
    return response.content.decode()


def row_of(text: str, record: FinancialRecord) -> str:
    """The table row of one record, to check what it says and nothing of its neighbours."""
    found = re.search(rf'<tr id="failed-{record.pk}">(.*?)</tr>', text, re.S)
    assert found, f"{record.reference} is not on the page"
    return found.group(1)


# --- S6.1: the list ---------------------------------------------------------------------------


def test_s6_1_every_failed_record_is_listed_with_details_error_retries_and_next_retry(
    org, other_org, admin_client, erp_sandbox
):
    configure(org, erp_sandbox, first_retry_delay_seconds=600)
    (transient,) = make_records(org, 1)
    big = FinancialRecord.objects.create(
        organization=org,
        source_id="big-one",
        kind="honorarium",
        category="honorarium",
        amount=Decimal("1234.50"),
        currency="NOK",
        expense_date=timezone.now().date(),
        approved_at=timezone.now() - timedelta(days=3),
        claimant_reference="V-77",
        claimant_name="Åse Ødegård",
    )
    fail(org, erp_sandbox, [transient])
    fail(org, erp_sandbox, [big], permanent_error_rate=1.0)
    synced, pending = make_records(org, 2, category="travel", start=50)[-2:]
    sync(org, "manual", record_ids=[synced.pk])
    configure(other_org, erp_sandbox)
    (theirs,) = make_records(other_org, 1, start=90)
    fail(other_org, erp_sandbox, [theirs])

    text = html(admin_client.get(page_url(org)))

    assert "2 failed records." in text
    transient.refresh_from_db()
    row = row_of(text, transient)
    assert transient.reference in row
    assert "Reimbursement" in row and "travel" in row
    assert "Kari Nordmann" in row and transient.claimant_reference in row
    assert f"{transient.amount} NOK" in row
    assert "503" in transient.last_error and transient.last_error in row
    assert '<td class="num">0</td>' in row  # one attempt: no retry yet (issue 11)
    with override("en"):
        approved = date_format(timezone.localtime(transient.approved_at), "SHORT_DATE_FORMAT")
        next_retry = date_format(
            timezone.localtime(transient.next_retry_at), "SHORT_DATETIME_FORMAT"
        )
    assert approved in row and next_retry in row
    assert "✗</span> Failed" in row  # a word beside the icon, not colour alone

    big.refresh_from_db()
    row = row_of(text, big)
    assert "Honorarium" in row and "Åse Ødegård" in row
    assert "1,234.50 NOK" in row  # money in the reader's locale
    assert "Period is closed" in row
    assert "none — retry by hand" in row  # permanent: no automatic retry

    assert synced.reference not in text and pending.reference not in text
    assert theirs.reference not in text


def test_s6_1_a_records_attempts_open_in_order_and_link_to_the_audit_log(
    org, admin_client, erp_sandbox
):
    (record,) = failed_org(org, erp_sandbox, 1)
    fail(org, erp_sandbox, [record], permanent_error_rate=1.0)
    first, second = SyncLog.objects.filter(record=record).order_by("attempt_number")

    row = row_of(html(admin_client.get(page_url(org))), record)

    assert "2 attempts" in row
    links = re.findall(r'<a href="([^"]+)">\s*Attempt (\d)', row)
    assert links == [
        (reverse("audit_entry", kwargs={"slug": org.slug, "pk": first.pk}), "1"),
        (reverse("audit_entry", kwargs={"slug": org.slug, "pk": second.pk}), "2"),
    ]
    assert row.index("503") < row.index("Period is closed", row.index("Attempt 2"))
    entry = admin_client.get(links[1][0])
    assert entry.status_code == 200 and f"retries attempt {first.pk}" in html(entry)


def test_s6_1_the_page_costs_the_same_queries_for_3_or_30_failed_records(
    org, admin_client, erp_sandbox
):
    configure(org, erp_sandbox)
    few = make_records(org, 3)
    fail(org, erp_sandbox, few)
    fail(org, erp_sandbox, few)  # two attempts each

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(page_url(org)).status_code == 200
        return len(captured)

    with_three = queries()
    many = make_records(org, 27, start=100)
    fail(org, erp_sandbox, many)
    fail(org, erp_sandbox, many)

    assert queries() == with_three
    assert "30 failed records." in html(admin_client.get(page_url(org)))


def test_s6_1_a_long_list_is_paged_and_retry_all_still_takes_every_page(
    org, admin_client, erp_sandbox
):
    records = failed_org(org, erp_sandbox, 60)

    first = html(admin_client.get(page_url(org)))
    second = html(admin_client.get(page_url(org), {"page": 2}))

    assert first.count('name="record"') == 50 and second.count('name="record"') == 10
    assert "Page 1 of 2" in first and "60 failed records." in second
    admin_client.post(retry_url(org), {"all": "1", "page": "2"})
    record_ids = SyncRun.objects.get(trigger="retry").record_ids
    assert record_ids is not None and sorted(record_ids) == [r.pk for r in records]


# --- S6.2 / S6.3: retry -----------------------------------------------------------------------


def test_s6_2_retry_selected_re_sends_exactly_the_chosen_records(
    org, other_org, org_admin, admin_client, erp_sandbox
):
    records = failed_org(org, erp_sandbox, 4)
    configure(other_org, erp_sandbox)
    (theirs,) = make_records(other_org, 1, start=90)
    fail(other_org, erp_sandbox, [theirs])
    chosen = [records[0], records[2]]

    response = admin_client.post(
        retry_url(org),
        {"record": [str(r.pk) for r in chosen] + [str(theirs.pk), "nonsense"]},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == page_url(org)
    assert "Retrying 2 records." in html(response)
    run = SyncRun.objects.get(status=SyncRun.Status.RUNNING)
    assert (run.trigger, run.triggered_by, run.record_ids) == (
        "retry",
        org_admin,
        sorted(r.pk for r in chosen),
    )
    action = AdminAction.objects.get(kind=AdminAction.Kind.SYNC_TRIGGERED)
    assert action.actor == org_admin and action.detail["records"] == 2

    done = run_started_by_the_page()

    assert (done.total, done.sent) == (2, 2)
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in chosen}
    text = html(admin_client.get(page_url(org)))
    assert "2 failed records." in text
    assert all(r.reference not in text for r in chosen)
    assert records[1].reference in text and records[3].reference in text
    theirs.refresh_from_db()
    assert theirs.state == State.FAILED


def test_s6_2_nothing_chosen_starts_nothing_and_says_so(org, admin_client, erp_sandbox):
    failed_org(org, erp_sandbox, 2)

    response = admin_client.post(retry_url(org), {}, follow=True)

    assert "Choose at least one failed record to retry." in html(response)
    assert not SyncRun.objects.filter(trigger="retry").exists()


def test_s6_3_retry_all_failed_retries_every_failed_record_as_one_run(
    org, admin_client, erp_sandbox
):
    records = failed_org(org, erp_sandbox, 5)
    (already_sent,) = make_records(org, 1, start=50)[-1:]
    sync(org, "manual", record_ids=[already_sent.pk])

    admin_client.post(retry_url(org), {"all": "1", "record": [str(records[0].pk)]})

    run = SyncRun.objects.get(trigger="retry")
    assert run.record_ids == [r.pk for r in records]
    done = run_started_by_the_page()
    assert (done.total, done.sent, done.status) == (5, 5, SyncRun.Status.SUCCEEDED)
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in [*records, already_sent]}
    assert "No failed records" in html(admin_client.get(page_url(org)))


def test_s6_3_a_partial_failure_keeps_only_the_failed_records_on_the_list(
    org, admin_client, erp_sandbox
):
    configure(org, erp_sandbox)
    travel = make_records(org, 2)
    (fee,) = make_records(org, 1, category="honorarium")
    fail(org, erp_sandbox, [*travel, fee])
    erp_sandbox.set_faults(unknown_accounts=["5330"])  # the honorarium account is gone

    admin_client.post(retry_url(org), {"all": "1"})
    done = run_started_by_the_page()

    assert (done.status, done.sent, done.failed) == (SyncRun.Status.PARTIAL, 2, 1)
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in travel}
    text = html(admin_client.get(page_url(org)))
    assert "1 failed record." in text and fee.reference in text
    assert "Account &#x27;5330&#x27; does not exist" in row_of(text, fee)


# --- S6.4 - S6.6: what a retry leaves behind ------------------------------------------------


def test_s6_4_a_successful_retry_leaves_the_list_and_its_attempt_points_at_the_failed_one(
    org, admin_client, erp_sandbox
):
    record, other = failed_org(org, erp_sandbox, 2)
    first = SyncLog.objects.get(record=record)

    admin_client.post(retry_url(org), {"record": [str(record.pk)]})
    run_started_by_the_page()

    text = html(admin_client.get(page_url(org)))
    assert record.reference not in text and other.reference in text
    record.refresh_from_db()
    assert record.state == State.SYNCED and record.last_error == ""
    retry = SyncLog.objects.get(retry_of=first)
    assert retry.status == SyncLog.Status.SUCCEEDED and retry.trigger == "retry"
    entry = html(admin_client.get(reverse("audit_entry", args=[org.slug, retry.pk])))
    assert f"retries attempt {first.pk}" in entry


def test_s6_5_a_retry_that_fails_again_stays_with_the_new_error_and_one_more_retry(
    org, admin_client, erp_sandbox
):
    (record,) = failed_org(org, erp_sandbox, 1)
    erp_sandbox.set_faults(permanent_error_rate=1.0)

    admin_client.post(retry_url(org), {"record": [str(record.pk)]})
    run_started_by_the_page()

    row = row_of(html(admin_client.get(page_url(org))), record)
    record.refresh_from_db()
    assert record.retry_count == 2
    assert '<td class="num">1</td>' in row  # two attempts: one retry
    assert re.search(r'<p class="error-message">[^<]*Period is closed', row)
    assert "2 attempts" in row and "503" in row  # the first error is kept in the attempts
    assert ledger_counts(erp_sandbox) == {}


def test_s6_6_a_manual_retry_goes_ahead_of_the_backoff_which_then_restarts_from_it(
    org, admin_client, erp_sandbox
):
    with time_machine.travel(timezone.now(), tick=True) as traveller:
        (record,) = failed_org(org, erp_sandbox, 1, first_retry_delay_seconds=3600)
        record.refresh_from_db()
        first_due = record.next_retry_at
        traveller.shift(timedelta(minutes=5))
        assert sync(org, "schedule").total == 0  # the backoff holds it back
        erp_sandbox.set_faults(error_rate=1.0)
        manual_at = timezone.now()

        admin_client.post(retry_url(org), {"record": [str(record.pk)]})
        done = run_started_by_the_page()

        assert done.total == 1  # sent although its automatic retry was not due
        record.refresh_from_db()
        assert record.next_retry_at is not None and first_due is not None
        assert record.next_retry_at >= manual_at + timedelta(seconds=3600) > first_due
        row = row_of(html(admin_client.get(page_url(org))), record)
        with override("en"):
            shown = date_format(timezone.localtime(record.next_retry_at), "SHORT_DATETIME_FORMAT")
        assert shown in row


# --- S3.4 on this page, auditors, a disabled connector ----------------------------------------


def test_s6_while_any_sync_runs_the_retry_buttons_are_disabled_and_a_retry_is_refused(
    org, admin_client, erp_sandbox
):
    records = failed_org(org, erp_sandbox, 2)
    going = start_run(org, "schedule")

    text = html(admin_client.get(page_url(org)))

    assert re.search(r'id="retry-selected"[^>]*disabled', text)
    assert re.search(r'id="retry-all"[^>]*disabled', text)
    assert "A sync is running (Schedule)" in text
    response = admin_client.post(retry_url(org), {"record": [str(records[0].pk)]}, follow=True)
    assert "A sync is already running" in html(response)
    assert SyncRun.objects.filter(status=SyncRun.Status.RUNNING).get() == going
    assert not SyncRun.objects.filter(trigger="retry").exists()


def test_s6_auditors_see_the_list_without_retry_controls_and_may_not_retry(
    org, auditor, erp_sandbox
):
    (record,) = failed_org(org, erp_sandbox, 1)
    client = Client()
    client.force_login(auditor)

    text = html(client.get(page_url(org)))

    assert record.reference in text and "read-only" in text
    assert "Retry Selected" not in text and "Retry All Failed" not in text
    assert 'name="record"' not in text
    assert client.post(retry_url(org), {"all": "1"}).status_code == 403
    assert not SyncRun.objects.filter(trigger="retry").exists()


def test_s6_a_disabled_connector_disables_retry_and_says_why(org, admin_client, erp_sandbox):
    failed_org(org, erp_sandbox, 1)
    Integration.objects.filter(organization=org).update(enabled=False)

    text = html(admin_client.get(page_url(org)))

    assert re.search(r'id="retry-all"[^>]*disabled', text)
    assert "The connector is disabled" in text
    response = admin_client.post(retry_url(org), {"all": "1"}, follow=True)
    assert "The connector is not enabled" in html(response)
    assert not SyncRun.objects.filter(trigger="retry").exists()


def test_s6_a_record_being_retried_stays_listed_as_retrying_now(org, admin_client, erp_sandbox):
    record, other = failed_org(org, erp_sandbox, 2)
    run = start_run(org, "retry", record_ids=[record.pk])
    FinancialRecord.objects.filter(pk=record.pk).update(state=State.SENDING, claimed_by=run)

    text = html(admin_client.get(page_url(org)))

    assert "Retrying now" in row_of(text, record)
    assert "Failed" in row_of(text, other)


# --- live: the list updates as retries finish ---------------------------------------------


def test_live_an_unchanged_list_answers_204_with_no_query_beyond_access(
    org, admin_client, erp_sandbox
):
    failed_org(org, erp_sandbox, 3)
    org.refresh_from_db()
    version = {"v": str(org.live_version)}
    admin_client.get(live_url(org), version)  # the session is warm, as for a polling page

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(live_url(org), version)

    assert response.status_code == 204 and response.content == b""
    tables = [re.findall(r'FROM "(\w+)"', q["sql"]) for q in captured.captured_queries]
    # The session, its user, the organization (with its version) and the membership.
    assert [t[0] for t in tables] == [
        "django_session",
        "auth_user",
        "integrations_organization",
        "integrations_membership",
    ]


def test_live_the_same_partial_re_renders_when_a_retry_finishes_and_says_its_outcome(
    org, admin_client, erp_sandbox
):
    failed_org(org, erp_sandbox, 3)
    started = admin_client.post(retry_url(org), {"all": "1"}, **HTMX)
    found = re.search(r'hx-get="([^"]+)"', html(started))
    assert found is not None
    poll = found.group(1).replace("&amp;", "&")
    run = SyncRun.objects.get(trigger="retry")
    assert f"run={run.pk}" in poll
    run_started_by_the_page()

    response = admin_client.get(poll)

    text = html(response)
    assert response.status_code == live.STOP_POLLING  # nothing left to watch
    assert text.lstrip().startswith('<section id="failed-live"')
    assert "<html" not in text and "No failed records" in text
    assert "hx-trigger" not in text  # the final state does not poll again
    assert re.search(
        r'<div id="announcer" hx-swap-oob="innerHTML">\s*Retry finished: 3 sent, 0 still failing.',
        text,
    )


def test_live_keeps_polling_while_failed_records_remain_and_says_a_run_started(
    org, admin_client, erp_sandbox
):
    failed_org(org, erp_sandbox, 2)

    quiet = admin_client.get(live_url(org), {"v": "stale"})
    assert quiet.status_code == 200 and "every 2s" in html(quiet)
    assert "hx-swap-oob" not in html(quiet)  # nothing new to say

    start_run(org, "schedule")
    busy = html(admin_client.get(live_url(org), {"v": "stale"}))
    assert "A sync is running; records can be retried again when it has finished." in busy
    assert re.search(r'id="retry-selected"[^>]*disabled', busy)


def test_live_retry_from_htmx_answers_with_the_live_part_showing_the_retry_going(
    org, admin_client, erp_sandbox
):
    records = failed_org(org, erp_sandbox, 3)

    response = admin_client.post(
        retry_url(org), {"record": [str(records[0].pk), str(records[1].pk)]}, **HTMX
    )

    text = html(response)
    assert response.status_code == 200
    assert text.lstrip().startswith('<section id="failed-live"')
    assert re.search(r'id="retry-selected"[^>]*disabled', text)
    assert "A sync is running (Retry): 0 of 0 records done." in text
    assert re.search(r'hx-swap-oob="innerHTML">\s*Retrying 2 records.', text)
    org.refresh_from_db()
    assert f"v={org.live_version}" in text  # the version that includes the new run


def test_live_a_refused_retry_from_htmx_says_why_in_the_list(org, admin_client, erp_sandbox):
    failed_org(org, erp_sandbox, 1)

    text = html(admin_client.post(retry_url(org), {}, **HTMX))

    assert "Choose at least one failed record to retry." in text
    assert 'class="banner banner-warning"' in text
