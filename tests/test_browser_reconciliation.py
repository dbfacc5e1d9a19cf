"""Issue 15 in Chromium: an auditor runs a reconciliation and exports it, by keyboard, in
English and in Norwegian, with axe-core finding nothing.

The reading really runs: the engine's `run` in a thread of this process, as the Celery
task would (the worker's process could not see the stand-in below). The ERP's side is a
stand-in ledger (tests/reconciliation_fakes.py), because `Connector.entries` of the real
connectors is still being built (issue 15 item 1); it answers a page a second, so the page
shows the reading in progress before its result.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounting_sync.models import FinancialRecord
from audit.models import AdminAction
from core.events import TrailKind
from reconciliation import engine
from reconciliation.models import Reconciliation
from tests.browser import accessibility_violations, log_in
from tests.factories import make_records
from tests.reconciliation_fakes import Ledger, entry, ready_integration, set_state, stand_in, stray

pytestmark = pytest.mark.browser
State = FinancialRecord.State
READING_TIMEOUT = 20_000  # ms: three pages a second apart, polled every 2 s


@pytest.fixture
def ledger(monkeypatch) -> Ledger:
    return stand_in(monkeypatch, per_page=2, pause=1.0)


@pytest.fixture
def worker_thread(monkeypatch) -> Iterator[list[threading.Thread]]:
    """The task's delivery: `engine.run` on a thread of its own, as a worker would."""
    started: list[threading.Thread] = []

    def deliver(reconciliation_id: int) -> None:
        def work() -> None:
            try:
                engine.run(reconciliation_id)
            finally:
                connection.close()

        thread = threading.Thread(target=work, daemon=True)
        started.append(thread)
        thread.start()

    monkeypatch.setattr("reconciliation.tasks.run_reconciliation.delay", deliver)
    yield started
    for thread in started:
        thread.join(timeout=30)


@pytest.fixture
def books(org, ledger) -> list[FinancialRecord]:
    """Five records sent; the ERP holds three as sent, one changed, one not at all, and a
    stranger under the organization's prefix."""
    ready_integration(org)
    records = make_records(org, 5)
    for record in records:
        set_state(record, State.SYNCED)
    same, also, third, changed, _missing = records
    day = timezone.localdate() - timedelta(days=1)
    ledger.entries_held = [
        entry(same),
        entry(also),
        entry(third),
        entry(changed, amount=Decimal("999.00")),
        stray(org, "=1+1", day),  # a reference that is a formula
    ]
    return records


def tab_to(page: Page, element_id: str, key: str = "Tab", limit: int = 80) -> None:
    """Press Tab until the element has the focus, as a keyboard user would."""
    for _ in range(limit):
        if page.evaluate("() => document.activeElement && document.activeElement.id") == (
            element_id
        ):
            return
        page.keyboard.press(key)
    raise AssertionError(f"#{element_id} never got the focus with {key}")


def run_by_keyboard(page: Page, day: str) -> None:
    tab_to(page, "id_start")
    page.keyboard.press("Control+a")
    page.locator("#id_start").fill(day)  # what typing the date would leave in the field
    tab_to(page, "id_end")
    page.locator("#id_end").fill(day)
    tab_to(page, "run-reconciliation")
    page.keyboard.press("Enter")


def test_issue15_item3_an_auditor_runs_and_exports_a_reconciliation_in_english_and_norwegian(
    page: Page, live_server, org, auditor, books, worker_thread
) -> None:
    day = (timezone.localdate() - timedelta(days=1)).isoformat()
    log_in(page, live_server.url, auditor.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/")
    page.get_by_role("link", name="Reconciliation:").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reconciliation")
    expect(page.locator("#no-reconciliations")).to_be_visible()
    assert accessibility_violations(page) == []

    run_by_keyboard(page, day)

    # The reading in progress, with the focus on it, then its result without a reload.
    progress = page.locator("#recon-progress")
    expect(progress).to_be_visible()
    page.wait_for_function(
        "() => document.activeElement && document.activeElement.id === 'recon-progress'"
    )
    page.evaluate("() => { window.notReloaded = true; }")
    assert accessibility_violations(page) == []
    expect(page.locator("#announcer")).to_contain_text(
        "Reconciliation finished: 6 items, 3 to look at.", timeout=READING_TIMEOUT
    )
    expect(progress).to_have_count(0)
    # The progress went: the focus moved to the outcome, as on the dashboard.
    page.wait_for_function(
        "() => document.activeElement && document.activeElement.id === 'recon-outcome'"
    )
    assert page.evaluate("() => window.notReloaded") is True
    reading = Reconciliation.objects.get()
    assert (reading.status, reading.pages_read, reading.requested_by) == ("done", 3, auditor)
    expect(page.locator("#recon-entries")).to_contain_text("5 entries; requests made: 3")
    expect(page.locator(".recon-items tbody tr")).to_have_count(6)
    expect(page.get_by_role("button", name="Send again")).to_have_count(0)  # not an auditor's
    assert accessibility_violations(page) == []

    # The filters, by keyboard: only the differences.
    tab_to(page, "id_klass")
    page.locator("#id_klass").select_option("different")
    tab_to(page, "apply-filters")
    page.keyboard.press("Enter")
    page.wait_for_load_state()
    expect(page.locator(".recon-items tbody tr")).to_have_count(1)
    expect(page.locator(".recon-items tbody")).to_contain_text("999.00")
    expect(page.locator(".recon-items tbody")).to_contain_text("Differs")
    assert accessibility_violations(page) == []

    # The export, by keyboard: the evidence, and a formula that stays text.
    tab_to(page, "export-csv")
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    with open(download.value.path(), encoding="utf-8-sig") as exported:
        head, _, table = exported.read().partition("\n\n")
    meta = dict(line.split(";", 1) for line in head.splitlines())
    assert meta["erp_digest"] == reading.erp_digest
    assert (meta["attempts_head"], meta["trail_head"]) == (
        reading.attempts_head,
        reading.trail_head,
    )
    assert meta["period_start"] == meta["period_end"] == day
    rows = list(csv.DictReader(table.splitlines(), delimiter=";"))
    assert len(rows) == 6
    # A formula inside a reference is harmless where it does not start the cell: kept as is.
    assert f"VH-{org.pk}-=1+1" in {row["reference"] for row in rows}
    assert all(not value or value[0] not in "=+-@" for row in rows for value in row.values())

    # The same page in Norwegian (Bokmål), chosen in the header.
    page.get_by_label("Language").select_option("nb")
    page.get_by_role("button", name="Change language").click()
    page.wait_for_load_state()
    assert page.evaluate("() => document.documentElement.lang") == "nb"
    assert "/reconciliation/" in page.url
    expect(page.locator(".recon-items tbody tr")).to_have_count(1)
    assert accessibility_violations(page) == []
    # A second reading, by keyboard in Norwegian, and its JSON export.
    run_by_keyboard(page, day)
    expect(page.locator("#recon-outcome")).to_be_visible(timeout=READING_TIMEOUT)
    page.wait_for_function(
        "() => document.activeElement && document.activeElement.id === 'recon-outcome'"
    )
    assert accessibility_violations(page) == []
    tab_to(page, "export-json")
    with page.expect_download() as download:
        page.keyboard.press("Enter")
    with open(download.value.path(), encoding="utf-8") as exported:
        document = json.load(exported)
    second = Reconciliation.objects.order_by("-id").first()
    assert second is not None and second.pk != reading.pk
    assert document["meta"]["reconciliation"] == second.pk
    assert document["meta"]["erp_digest"] == reading.erp_digest  # the same answers read
    assert len(document["rows"]) == 6
    assert {action.kind for action in AdminAction.objects.filter(actor_username="auditor")} == {
        TrailKind.RECONCILIATION_REQUESTED,
        TrailKind.RECONCILIATION_EXPORTED,
    }
    assert AdminAction.objects.filter(kind=TrailKind.RECONCILIATION_EXPORTED).count() == 2


def test_issue15_item5_an_admin_accepts_a_difference_by_keyboard_and_sees_who_and_when(
    page: Page, live_server, org, org_admin, books, ledger
) -> None:
    ledger.pause = 0.0
    day = timezone.localdate() - timedelta(days=1)
    reading = engine.run(engine.request(org, day, day).pk)
    assert reading is not None
    different = reading.items.get(klass="different")
    log_in(page, live_server.url, org_admin.username)
    page.goto(f"{live_server.url}/orgs/{org.slug}/reconciliation/")
    expect(page.get_by_role("button", name="Send again")).to_have_count(1)
    page.locator(f"#accept-{different.pk}-summary").click()  # an open form for axe too
    assert accessibility_violations(page) == []

    tab_to(page, f"comment-{different.pk}")
    page.keyboard.type("Finance corrected the amount; see voucher 4411.")
    tab_to(page, f"accept-button-{different.pk}")
    page.keyboard.press("Enter")
    page.wait_for_load_state()

    expect(page.locator(".messages")).to_contain_text("is accepted")
    row = page.locator(f"#item-{different.pk}")
    expect(row).to_contain_text("Difference accepted, by own-admin")
    expect(row).to_contain_text("Comment: Finance corrected the amount; see voucher 4411.")
    assert accessibility_violations(page) == []
