"""S6 in Chromium: the failed records page with a real worker and the ERP sandbox over HTTPS.

The records are made to fail by the sandbox first (a sync in this process); the retries
the page starts are carried out by the Celery worker, and the page learns of them by
polling, without a reload.
"""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounting_sync.models import FinancialRecord, SyncRun
from integrations.clients import business_central as bc
from integrations.clients import xledger as xl
from tests.browser import accessibility_violations, log_in
from tests.factories import configure, ledger_counts, make_records, states, sync

pytestmark = [pytest.mark.browser, pytest.mark.worker]
State = FinancialRecord.State
WORKER_TIMEOUT = 30_000  # ms: the worker picks the run up, the page polls every 2 s


@pytest.fixture(autouse=True)
def _trust_the_sandbox(erp_sandbox, settings) -> None:
    # Set before the worker starts, so the worker trusts the sandbox's CA too.
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    xl._tokens.clear()
    bc._apps.clear()


def fail(org, erp_sandbox, records: list[FinancialRecord]) -> None:
    """The sandbox answers 503 to one sync of these records; then it is well again."""
    erp_sandbox.set_faults(error_rate=1.0)
    sync(org, "manual", record_ids=[r.pk for r in records])
    erp_sandbox.set_faults()


@pytest.fixture
def three_failed(org, erp_sandbox) -> list[FinancialRecord]:
    # A long backoff: none of them is due for an automatic retry during the test (S6.6).
    configure(org, erp_sandbox, first_retry_delay_seconds=3600)
    records = make_records(org, 3)
    fail(org, erp_sandbox, records)
    assert states(org) == {State.FAILED: 3}
    return records


def open_failed_page(page: Page, live_server, org, user) -> Page:
    log_in(page, live_server.url, user.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/failed/")
    # Set on this document only: still there later means the page was never reloaded.
    page.evaluate("window.notReloaded = true")
    return page


def box(page: Page, record: FinancialRecord):
    return page.get_by_label(f"Select {record.reference}", exact=True)


def row(page: Page, record: FinancialRecord):
    return page.locator(f"#failed-{record.pk}")


def tab_to(page: Page, element_id: str, key: str = "Tab", limit: int = 40) -> None:
    """Press Tab (or Shift+Tab) until the element has the focus, as a keyboard user would."""
    for _ in range(limit):
        if page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        page.keyboard.press(key)
    raise AssertionError(f"#{element_id} never got the focus with {key}")


def test_s6_2_and_s6_6_retry_selected_sends_only_those_two_ahead_of_their_backoff_live(
    page: Page, live_server, org, org_admin, erp_sandbox, three_failed, celery_worker
) -> None:
    first, second, third = three_failed
    assert all(
        r.next_retry_at is not None and r.next_retry_at > timezone.now()
        for r in FinancialRecord.objects.all()
    )
    open_failed_page(page, live_server, org, org_admin)
    expect(page.get_by_text("3 failed records.")).to_be_visible()
    # Each call to the ERP takes 4 s: the page (polling every 2 s) sees the retry going.
    erp_sandbox.set_faults(latency_ms=4000)
    page.get_by_text("1 attempt of " + second.reference).click()  # left open across re-renders

    box(page, first).check()
    box(page, third).check()
    page.get_by_role("button", name="Retry Selected").click()

    expect(page.locator("#announcer")).to_contain_text("Retrying 2 records.")
    expect(page.get_by_role("button", name="Retry All Failed")).to_be_disabled()
    expect(page.get_by_text("A sync is running (Retry)")).to_be_visible()
    expect(row(page, first)).to_contain_text("Retrying now", timeout=WORKER_TIMEOUT)
    # A tick given while the list keeps re-rendering is kept (hx-preserve).
    box(page, second).check()

    expect(page.locator("#announcer")).to_contain_text(
        "Retry finished: 2 sent, 0 still failing.", timeout=WORKER_TIMEOUT
    )
    expect(row(page, first)).to_have_count(0)
    expect(row(page, third)).to_have_count(0)
    expect(page.get_by_text("1 failed record.")).to_be_visible()
    expect(box(page, second)).to_be_checked()
    expect(page.locator(f"#attempts-{second.pk}")).to_have_attribute("open", "")
    expect(page.get_by_role("button", name="Retry Selected")).to_be_enabled()
    assert page.evaluate("window.notReloaded") is True
    assert ledger_counts(erp_sandbox) == {first.reference: 1, third.reference: 1}
    assert states(org) == {State.SYNCED: 2, State.FAILED: 1}
    assert SyncRun.objects.get(trigger="retry").record_ids == sorted([first.pk, third.pk])
    assert accessibility_violations(page) == []


def test_s6_3_and_s6_5_retry_all_failed_a_partial_failure_leaves_sent_records_in_the_ledger(
    page: Page, live_server, org, org_admin, erp_sandbox, celery_worker
) -> None:
    configure(org, erp_sandbox)
    travel = make_records(org, 2)
    (fee,) = make_records(org, 1, category="honorarium")
    fail(org, erp_sandbox, [*travel, fee])
    erp_sandbox.set_faults(unknown_accounts=["5330"])  # the honorarium account is gone
    open_failed_page(page, live_server, org, org_admin)

    page.get_by_role("button", name="Retry All Failed").click()

    expect(page.locator("#announcer")).to_contain_text(
        "Retry finished: 2 sent, 1 still failing.", timeout=WORKER_TIMEOUT
    )
    for record in travel:
        expect(row(page, record)).to_have_count(0)
    # S6.5: still on the list, with the new error and one more retry counted: two
    # attempts, the second a retry (issue 11: retries = attempts - 1).
    fee_row = row(page, fee)
    expect(fee_row).to_contain_text("Account '5330' does not exist")
    expect(fee_row.locator("td.num").last).to_have_text("1")
    fee_row.get_by_text("2 attempts").click()
    expect(fee_row.get_by_role("link", name="Attempt 2")).to_be_visible()
    expect(fee_row.get_by_role("listitem")).to_have_count(2)
    assert page.evaluate("window.notReloaded") is True
    assert ledger_counts(erp_sandbox) == {r.reference: 1 for r in travel}
    assert states(org) == {State.SYNCED: 2, State.FAILED: 1}
    assert SyncRun.objects.filter(trigger="retry").count() == 1
    assert accessibility_violations(page) == []


def test_s6_2_retry_selected_by_keyboard_alone(
    page: Page, live_server, org, org_admin, erp_sandbox, three_failed, celery_worker
) -> None:
    first, second, third = three_failed
    log_in(page, live_server.url, org_admin.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/failed/")

    tab_to(page, f"record-{second.pk}")
    page.keyboard.press("Space")
    tab_to(page, f"record-{first.pk}")
    page.keyboard.press("Space")
    tab_to(page, "retry-selected", key="Shift+Tab")
    page.keyboard.press("Enter")

    # The button is disabled while the retry runs: the focus goes to the list's status
    # line instead of being lost, and the outcome is announced.
    # A function, not a bare expression: Playwright runs an expression through eval(),
    # which the page's Content-Security-Policy refuses.
    page.wait_for_function(
        "() => document.activeElement && document.activeElement.id === 'failed-status'"
    )
    expect(page.locator("#announcer")).to_contain_text(
        "Retry finished: 2 sent, 0 still failing.", timeout=WORKER_TIMEOUT
    )
    expect(row(page, third)).to_be_visible()
    assert ledger_counts(erp_sandbox) == {first.reference: 1, second.reference: 1}


def test_s6_1_the_page_has_no_accessibility_violations_for_admins_auditors_and_in_norwegian(
    page: Page, live_server, org, org_admin, auditor, three_failed
) -> None:
    open_failed_page(page, live_server, org, org_admin)
    page.get_by_text("1 attempt").first.click()  # an open attempt list too
    assert accessibility_violations(page) == []

    # The person picks Norwegian in the header; the same page, in Bokmål.
    page.get_by_label("Language").select_option("nb")
    page.get_by_role("button", name="Change language").click()
    page.wait_for_load_state()
    assert page.evaluate("document.documentElement.lang") == "nb"
    assert "/failed/" in page.url
    assert accessibility_violations(page) == []

    page.context.clear_cookies()
    open_failed_page(page, live_server, org, auditor)
    expect(page.get_by_role("button", name="Retry Selected")).to_have_count(0)
    expect(page.get_by_role("checkbox")).to_have_count(0)
    assert accessibility_violations(page) == []
