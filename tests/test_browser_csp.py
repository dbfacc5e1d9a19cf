"""Issue 12 item 8 in Chromium: under the Content-Security-Policy no page reports a
violation, and what is live still works: the dashboard's Trigger Sync Now dialog and its
polling (with the hidden-tab throttle now in live.js), the failed records list, the
overview, the settings page's connection test and the schedule preview.

Violations are caught three ways: a `securitypolicyviolation` listener added by a
Playwright init script (test code, run before the page's own), Chromium's console
messages, and uncaught page errors (an eval refused by the policy throws).
htmx's own refusal to evaluate (htmx:evalDisallowedError) is counted too: with allowEval
off, anything still relying on it would silently stop working rather than be blocked.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from accounting_sync.models import FinancialRecord, SyncRun
from integrations.models import ConnectionTest, Integration
from organizations.models import Organization
from tests.browser import log_in
from tests.factories import make_records
from tests.test_browser_i18n import PAGES, site  # noqa: F401 (site: a fixture used below)

pytestmark = pytest.mark.browser

LIVE = 10_000  # ms: a poll every 2 s, with room for a slow machine

WATCH = """
window.__violations = [];
window.__htmxEvalRefused = 0;
document.addEventListener("securitypolicyviolation", function (event) {
  window.__violations.push(event.effectiveDirective + " blocked " + (event.blockedURI || "inline")
    + " at " + event.sourceFile + ":" + event.lineNumber);
}, true);
document.addEventListener("htmx:evalDisallowedError", function () {
  window.__htmxEvalRefused += 1;
}, true);
"""
# What Chromium logs about a policy: a refusal, or a header it could not read.
POLICY_MESSAGE = re.compile(r"Content Security Policy|Permissions-Policy|Refused to", re.I)
# Counts, per live part, the poll ticks htmx asks live.js about (htmx:confirm without a
# triggering event), refused or not. Added after live.js, so it sees live.js's decision made.
COUNT_TICKS = """() => {
  window.__liveTicks = {};
  document.addEventListener("htmx:confirm", function (event) {
    var element = event.detail.elt;
    if (element.hasAttribute("data-live") && !event.detail.triggeringEvent) {
      window.__liveTicks[element.id] = (window.__liveTicks[element.id] || 0) + 1;
    }
  });
}"""
EVERY_LIVE_PART_TICKED = """n => Array.from(document.querySelectorAll("[data-live]"))
  .every(element => (window.__liveTicks[element.id] || 0) >= n)"""
# Set once htmx has handled the change event the form hears (schedule.js decides on it).
SEE_FORM_CHANGE = """() => {
  window.__formChangeHandled = false;
  document.addEventListener("htmx:confirm", function (event) {
    var trigger = event.detail.triggeringEvent;
    var form = event.detail.elt.hasAttribute("data-preview-form");
    if (form && trigger && trigger.type === "change") {
      window.__formChangeHandled = true;
    }
  });
}"""
HTMX_IDLE = "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"


def wait_for_polls(page: Page, count: int) -> None:
    """Until the page's live part has polled `count` more times and htmx has handled the
    last answer: a fixed wait could end before a poll on a slow machine."""
    for _ in range(count):
        with page.expect_request_finished(lambda request: "/live/" in request.url, timeout=LIVE):
            pass
    page.wait_for_function(HTMX_IDLE, timeout=LIVE)


class Watcher:
    """Collects, page by page, what the policy (or htmx) refused."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.add_init_script(WATCH)
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))

    def _console(self, message) -> None:
        if POLICY_MESSAGE.search(message.text):
            self.problems.append(f"console {message.type}: {message.text}")

    def collect(self, where: str) -> None:
        """What this document reported so far (call it before leaving the page)."""
        violations, refused = self.page.evaluate("[window.__violations, window.__htmxEvalRefused]")
        self.problems += [f"{where}: {violation}" for violation in violations]
        if refused:
            self.problems.append(f"{where}: htmx refused to evaluate {refused} time(s)")
        self.page.evaluate("window.__violations = []; window.__htmxEvalRefused = 0")


@pytest.fixture
def watcher(page: Page) -> Iterator[Watcher]:
    watched = Watcher(page)
    yield watched


def visit(page: Page, watcher: Watcher, url: str, name: str) -> None:
    response = page.goto(url)
    assert response is not None and response.status in (200, 403, 404), name
    # The headers the browser got, and htmx configured as base.html says.
    assert "script-src 'self'" in response.headers["content-security-policy"], name
    assert "unsafe-inline" not in response.headers["content-security-policy"], name
    assert "camera=()" in response.headers["permissions-policy"], name
    page.wait_for_load_state("load")
    if page.evaluate("typeof window.htmx") == "object":
        config = page.evaluate(
            "[htmx.config.allowEval, htmx.config.allowScriptTags,"
            " htmx.config.includeIndicatorStyles, document.querySelectorAll('style').length]"
        )
        assert config == [False, False, False, 0], name
    watcher.collect(name)


def test_issue12_item8_no_page_reports_a_csp_violation(
    page: Page,
    watcher: Watcher,
    live_server,
    site,  # noqa: F811 (the fixture)
    global_admin,
) -> None:
    visit(page, watcher, f"{live_server.url}{reverse('login')}", "login")
    log_in(page, live_server.url, global_admin.username)
    for name, url in PAGES.items():
        visit(page, watcher, f"{live_server.url}{url(site)}", name)
    visit(page, watcher, f"{live_server.url}/orgs/no-such-organization/", "404")
    visit(page, watcher, f"{live_server.url}{reverse('admin:index')}", "admin")
    # Stay a few polls on a live page: what htmx swaps in must pass the policy too.
    visit(page, watcher, f"{live_server.url}{PAGES['organization_home'](site)}", "dashboard")
    wait_for_polls(page, 2)
    watcher.collect("dashboard, after polling")
    assert watcher.problems == []

    # The watch sees a violation when there is one (so its silence above means something):
    # an inline style attribute added now is refused and reported.
    page.evaluate("document.body.insertAdjacentHTML('beforeend', '<p style=\"color: red\">x</p>')")
    page.wait_for_function("() => window.__violations.length > 0")
    assert "style-src" in page.evaluate("window.__violations[0]")


def hide_tab(page: Page, hidden: bool) -> None:
    """Chromium keeps a test's page visible: say otherwise, as a background tab would."""
    page.evaluate(
        "hidden => { Object.defineProperty(document, 'hidden', {value: hidden,"
        " configurable: true}); document.dispatchEvent(new Event('visibilitychange')); }",
        hidden,
    )


def test_issue12_item8_the_dashboard_dialog_and_polling_work_under_the_policy(
    page: Page,
    watcher: Watcher,
    live_server,
    site,  # noqa: F811 (the fixture)
    org_admin,
) -> None:
    org = site["org"]
    make_records(org, 3)
    pending = FinancialRecord.objects.filter(organization=org, state="pending").count()
    log_in(page, live_server.url, org_admin.username)
    page.goto(f"{live_server.url}{reverse('organization_home', args=[org.slug])}")
    page.evaluate("window.notReloaded = true")
    expect(page.locator("#pending-count")).to_have_text(str(pending))

    # The dialog (dashboard.js): opens on the button, closes on Cancel and on Escape.
    trigger = page.get_by_role("button", name="Trigger Sync Now")
    trigger.click()
    dialog = page.get_by_role("dialog", name="Sync now?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"{pending} records will be sent to Xledger.")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    trigger.click()
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Polling: records arriving elsewhere show up, in the dialog's count too (out of band).
    make_records(org, 2, start=100)
    Organization.touch(org.pk)
    expect(page.locator("#pending-count")).to_have_text(str(pending + 2), timeout=LIVE)
    trigger.click()
    expect(dialog).to_contain_text(f"{pending + 2} records will be sent to Xledger.")
    page.keyboard.press("Escape")

    # A run started elsewhere disables the button and shows its progress.
    run = SyncRun.objects.create(
        organization=org, connector="xledger", trigger="schedule", total=5, done=1
    )
    Organization.touch(org.pk)
    expect(trigger).to_be_disabled(timeout=LIVE)
    expect(page.locator("#sync-progress-text")).to_have_text("1 of 5 records done")

    # Hidden, the tab stops polling every 2 s (the throttle moved from a trigger filter into
    # live.js); shown again, it refreshes at once.
    polls: list[str] = []
    page.on(
        "request",
        lambda request: polls.append(request.url) if "/live/" in request.url else None,
    )
    page.evaluate(COUNT_TICKS)
    hide_tab(page, True)
    SyncRun.objects.filter(pk=run.pk).update(done=3)
    Organization.touch(org.pk)
    # Two ticks of every live part (about 4 s) came while hidden; each would have polled.
    page.wait_for_function(EVERY_LIVE_PART_TICKED, arg=2, timeout=LIVE)
    assert polls == []
    expect(page.locator("#sync-progress-text")).to_have_text("1 of 5 records done")
    hide_tab(page, False)
    expect(page.locator("#sync-progress-text")).to_have_text("3 of 5 records done", timeout=LIVE)
    assert polls  # the refresh on showing

    SyncRun.objects.filter(pk=run.pk).update(
        status="succeeded", done=5, sent=5, finished_at=timezone.now()
    )
    FinancialRecord.objects.filter(organization=org, state="pending").update(state="synced")
    Organization.touch(org.pk)
    expect(trigger).to_be_enabled(timeout=LIVE)
    expect(page.locator("#pending-count")).to_have_text("0")
    assert page.evaluate("window.notReloaded") is True
    watcher.collect("dashboard")
    assert watcher.problems == []


def test_issue12_item8_failed_records_overview_settings_and_schedule_stay_live(
    page: Page,
    watcher: Watcher,
    live_server,
    site,  # noqa: F811 (the fixture)
    global_admin,
) -> None:
    org = site["org"]
    log_in(page, live_server.url, global_admin.username)

    # Failed records: a record sent by a retry elsewhere leaves the list without a reload.
    page.goto(f"{live_server.url}{reverse('failed_records', args=[org.slug])}")
    page.evaluate("window.notReloaded = true")
    expect(page.get_by_text("2 failed records.")).to_be_visible()
    FinancialRecord.objects.filter(pk=site["attempt"].record_id).update(
        state="synced", last_error=""
    )
    Organization.touch(org.pk)
    expect(page.get_by_text("1 failed record.")).to_be_visible(timeout=LIVE)
    assert page.evaluate("window.notReloaded") is True
    watcher.collect("failed records")

    # The overview: new pending records of the organization show in the totals.
    page.goto(f"{live_server.url}{reverse('overview')}")
    pending = page.locator("#total-pending")
    before = int(pending.inner_text())
    make_records(org, 4, start=200)
    Organization.touch(org.pk)
    expect(pending).to_have_text(str(before + 4), timeout=LIVE)
    watcher.collect("overview")

    # Settings: a connection test still going is polled every second until it ends.
    integration = Integration.objects.get(organization=org)
    test = ConnectionTest.objects.create(integration=integration, requested_by=global_admin)
    page.goto(f"{live_server.url}{reverse('integration_settings', args=[org.slug])}")
    expect(page.get_by_label("Testing the connection")).to_be_visible()
    ConnectionTest.objects.filter(pk=test.pk).update(
        status=ConnectionTest.Status.SUCCEEDED,
        account_count=1,
        cost_center_count=1,
        finished_at=timezone.now(),
    )
    expect(page.locator("#connection-live")).to_contain_text("Connected to Xledger", timeout=LIVE)
    watcher.collect("settings")

    # The schedule: a change previews (the form's own trigger), and so does the cron field
    # (its own hx-get), which the form leaves to it (schedule.js, formerly a trigger filter).
    page.goto(f"{live_server.url}{reverse('integration_schedule', args=[org.slug])}")
    previews: list[str] = []
    page.on(
        "request",
        lambda request: previews.append(request.url) if "preview" in request.url else None,
    )
    preview = page.locator("#schedule-preview")
    with page.expect_response(lambda response: "preview" in response.url):
        page.get_by_role("radio", name="Weekly").check()
    with page.expect_response(lambda response: "preview" in response.url):
        page.get_by_role("radio", name="Custom (cron)").check()
    cron = page.get_by_label("Cron expression")
    # The field's own preview (after its typing delay) is answered before the list is cleared.
    with page.expect_response(lambda response: "preview" in response.url, timeout=LIVE):
        cron.fill("*/15 9-17 * * 1-5")
    expect(preview).to_contain_text("Every 15 minutes", timeout=LIVE)
    page.evaluate(SEE_FORM_CHANGE)
    previews.clear()
    cron.blur()  # the change event: the form must not ask for the same preview again
    # htmx has decided on that change (it would send the request right then), not a
    # guessed 1.5 s later.
    page.wait_for_function("() => window.__formChangeHandled", timeout=LIVE)
    assert previews == []
    watcher.collect("schedule")
    assert watcher.problems == []
