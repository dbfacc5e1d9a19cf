"""The global overview (S4.2, S5): every organization's health at a glance, sorted and
filtered, live; and whether a worker runs."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from accounting_sync.models import FinancialRecord, SyncRun, WorkerHeartbeat
from accounting_sync.views.overview import CLOCK_TICK_SECONDS
from integrations.models import Integration
from organizations.models import Organization

# --- building organizations in a known state -------------------------------------------------


def add_records(organization, state: str, count: int, *, age: timedelta = timedelta(0)) -> None:
    """`count` records in `state`, received `age` ago."""
    start = FinancialRecord.objects.filter(organization=organization).count()
    FinancialRecord.objects.bulk_create(
        FinancialRecord(
            organization=organization,
            source_id=f"{organization.slug}-{state}-{start + n}",
            kind="reimbursement",
            category="travel",
            amount="120.00",
            expense_date="2026-03-01",
            approved_at="2026-03-02T10:00:00+01:00",
            claimant_reference="V-1",
            claimant_name="Kari Nordmann",
            state=state,
        )
        for n in range(count)
    )
    if age:
        FinancialRecord.objects.filter(organization=organization, state=state).update(
            received_at=timezone.now() - age
        )


def add_finished_run(organization, ago: timedelta, *, status="succeeded", failed=0) -> SyncRun:
    finished = timezone.now() - ago
    run = SyncRun.objects.create(
        organization=organization,
        connector="xledger",
        trigger="schedule",
        status=status,
        finished_at=finished,
        failed=failed,
    )
    SyncRun.objects.filter(pk=run.pk).update(started_at=finished - timedelta(seconds=30))
    return run


def make_org(
    name: str,
    *,
    connector: str | None = "xledger",
    enabled: bool = True,
    pending: int = 0,
    pending_age: timedelta = timedelta(0),
    failed: int = 0,
    synced_ago: timedelta | None = timedelta(hours=1),
) -> Organization:
    """An organization with an integration, records and a last run as the test needs."""
    organization = Organization.objects.create(name=name, slug=slugify(name))
    if connector:
        integration = Integration.objects.create(
            organization=organization,
            connector=connector,
            enabled=enabled,
            connection_verified_at=timezone.now() - timedelta(days=30),
            payable_account="2910",
        )
        integration.mappings.create(category="travel", account_code="7130", cost_center_code="1")
    add_records(organization, "pending", pending, age=pending_age)
    add_records(organization, "failed", failed)
    if synced_ago is not None:
        add_records(organization, "synced", 1)  # green needs a record seen sent (issue 11)
        add_finished_run(
            organization, synced_ago, status="partial" if failed else "succeeded", failed=failed
        )
    return organization


def healthy(name: str) -> Organization:
    return make_org(name)


def erring(name: str, failed: int = 2) -> Organization:
    """Amber: records failed in the last sync (S4.4)."""
    return make_org(name, failed=failed)


def overdue(name: str) -> Organization:
    """Red: records have waited two days and no sync for 30 hours (S4.5)."""
    return make_org(name, pending=3, pending_age=timedelta(days=2), synced_ago=timedelta(hours=30))


# --- reading the page ---------------------------------------------------------------------------


@pytest.fixture
def client(global_admin) -> Client:
    client = Client()
    client.force_login(global_admin)
    return client


def overview_page(client: Client, **query) -> str:
    response = client.get(reverse("overview"), query)
    assert response.status_code == 200
    return response.content.decode()


def rows(page: str) -> dict[str, str]:
    """Each organization's table row by slug, in page order."""
    return dict(re.findall(r'<tr id="org-([\w-]+)"(.*?)</tr>', page, re.S))


def text(html: str) -> str:
    """What a reader sees: tags gone, spaces squeezed."""
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def cells(row: str) -> list[str]:
    return re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)


def visible_text(html: str) -> str:
    """Text without the visually hidden parts and aria-hidden icons."""
    html = re.sub(r'<span class="visually-hidden">.*?</span>', "", html, flags=re.S)
    return text(re.sub(r'<span aria-hidden="true">.*?</span>', "", html, flags=re.S))


# --- the worker notice ----------------------------------------------------------------------------


def test_no_worker_seen_is_a_warning(org, client) -> None:
    assert "No background worker has checked in yet" in overview_page(client)


def test_a_worker_seen_a_minute_ago_is_fine_and_one_silent_for_ten_is_not(org, client) -> None:
    WorkerHeartbeat.objects.create(hostname="w@host", seen_at=timezone.now())
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        page = overview_page(client)
        assert "Background worker last seen" in page
        assert "No background worker" not in page
    with time_machine.travel(timezone.now() + timedelta(minutes=10)):
        assert "No background worker has checked in since" in overview_page(client)


# --- S4.2 and S5.1: one row per organization --------------------------------------------------


@pytest.mark.django_db
def test_s4_2_one_row_per_organization_with_its_connector_type_and_health(client) -> None:
    healthy("Blindeforbundet")
    make_org("HLF", connector="business_central", failed=1)
    make_org("Unconfigured", connector=None, synced_ago=None)

    page = overview_page(client)
    found = rows(page)
    assert sorted(found) == ["blindeforbundet", "hlf", "unconfigured"]
    assert "Xledger" in found["blindeforbundet"]
    assert "Dynamics 365 Business Central" in found["hlf"]
    assert "Not set up" in found["unconfigured"]
    # Health is a word with an icon hidden from screen readers, not colour alone (S4.3-S4.4).
    assert '<span aria-hidden="true">✓</span> Healthy' in found["blindeforbundet"]
    assert '<span aria-hidden="true">⚠</span> Errors' in found["hlf"]
    assert '<span aria-hidden="true">○</span> Off' in found["unconfigured"]


@pytest.mark.django_db
def test_s5_1_a_row_shows_connector_enabled_state_last_sync_pending_and_errors(client) -> None:
    organization = make_org("Blindeforbundet", pending=4, failed=2, synced_ago=timedelta(hours=2))
    make_org("HLF", connector="business_central", enabled=False)
    last_sync = SyncRun.objects.get(organization=organization).finished_at

    found = rows(overview_page(client))
    row = cells(found["blindeforbundet"])
    assert [text(cell) for cell in row[2:4]] == ["Xledger", "Enabled"]
    # The last sync in the reader's time zone and locale.
    local = timezone.localtime(last_sync)
    assert f'datetime="{local.isoformat()}"' in row[4]
    assert text(row[4]) == local.strftime("%Y-%m-%d %H:%M")  # English, 24-hour clock
    assert text(row[5]) == "4"
    assert visible_text(row[6]) == "2"
    assert "Disabled" in found["hlf"]


@pytest.mark.django_db
def test_s5_1_dates_and_words_follow_the_readers_language(client) -> None:
    healthy("Blindeforbundet")
    last_sync = timezone.localtime(SyncRun.objects.get().finished_at)

    row = rows(overview_page(client, **{}))["blindeforbundet"]
    client.cookies["django_language"] = "nb"
    norwegian = rows(client.get(reverse("overview"), HTTP_ACCEPT_LANGUAGE="nb").content.decode())
    assert last_sync.strftime("%Y-%m-%d %H:%M") in row
    assert last_sync.strftime("%d.%m.%Y %H:%M") in norwegian["blindeforbundet"]
    # The row's words too, though they are translated once per page, not once per row.
    assert "I orden" in norwegian["blindeforbundet"]
    assert "Feilede bilag" in norwegian["blindeforbundet"]
    assert "Slått på" in norwegian["blindeforbundet"]


@pytest.mark.django_db
def test_s5_1_an_organizations_name_is_escaped_everywhere_in_its_row(client) -> None:
    organization = make_org("Ås & Æra <b>", failed=1)
    Organization.objects.filter(pk=organization.pk).update(name='Ås & Æra <b class="x">')

    row = rows(overview_page(client))[organization.slug]
    assert "<b" not in row
    assert "Ås &amp; Æra &lt;b class=&quot;x&quot;&gt;</a></th>" in row
    assert "failed record of Ås &amp; Æra &lt;b class=&quot;x&quot;&gt;: see the errors" in row
    assert 'Audit log<span class="visually-hidden"> of Ås &amp; Æra &lt;b' in row


# --- S5.2: failed rows highlighted ------------------------------------------------------------


@pytest.mark.django_db
def test_s5_2_failed_row_highlighted(client) -> None:
    erring("HLF")
    overdue("Blindeforbundet")
    healthy("Red Cross")
    make_org("Switched Off", enabled=False, failed=1)
    add_records(Organization.objects.get(slug="blindeforbundet"), "failed", 1)

    found = rows(overview_page(client))
    assert 'class="overview-row overview-row-amber"' in found["hlf"]
    assert 'class="overview-row overview-row-red"' in found["blindeforbundet"]
    assert 'class="overview-row"' in found["red-cross"]
    # A failed record is highlighted even when the connector is off (its health is grey).
    assert 'class="overview-row overview-row-amber"' in found["switched-off"]
    # The error count is a link to the error details, told in words (S4.4).
    assert reverse("failed_records", args=["hlf"]) in found["hlf"]
    assert "2 failed records of HLF: see the errors" in text(found["hlf"])


# --- S5.3: stale rows flagged -------------------------------------------------------------------


STALE_WARNING = "Stale: no sync for more than 24 hours"


@pytest.mark.django_db
def test_s5_3_a_connector_without_a_sync_for_more_than_24_hours_is_flagged(client) -> None:
    make_org("Blindeforbundet", synced_ago=timedelta(hours=25))
    make_org("HLF", synced_ago=timedelta(hours=23))
    make_org("Never Synced", synced_ago=None)
    make_org("Switched Off", enabled=False, synced_ago=timedelta(days=9))

    found = rows(overview_page(client))
    assert STALE_WARNING in text(found["blindeforbundet"])
    assert STALE_WARNING in text(found["never-synced"])
    assert "Never" in text(found["never-synced"])
    assert STALE_WARNING not in text(found["hlf"])
    # Only an enabled connector is expected to sync.
    assert STALE_WARNING not in text(found["switched-off"])


@pytest.mark.django_db
def test_s5_3_a_row_turns_stale_as_time_passes(client, global_admin) -> None:
    make_org("Blindeforbundet", synced_ago=timedelta(hours=23))
    assert STALE_WARNING not in overview_page(client)
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        client.force_login(global_admin)  # two idle hours end a session (issue 12 item 2)
        assert STALE_WARNING in overview_page(client)


# --- S5.4: drill down -------------------------------------------------------------------------


@pytest.mark.django_db
def test_s5_4_each_row_links_to_its_dashboard_failed_records_and_audit_log(client) -> None:
    healthy("Blindeforbundet")
    erring("HLF")

    found = rows(overview_page(client))
    for slug, name in (("blindeforbundet", "Blindeforbundet"), ("hlf", "HLF")):
        row = found[slug]
        assert f'<a href="{reverse("organization_home", args=[slug])}"' in row
        assert f'href="{reverse("failed_records", args=[slug])}"' in row
        assert f'href="{reverse("audit_log", args=[slug])}"' in row
        # Each link names its organization for a screen reader listing the links.
        assert f"Failed records of {name}" in text(row)
        assert f"Audit log of {name}" in text(row)
        for url in (
            reverse("organization_home", args=[slug]),
            reverse("failed_records", args=[slug]),
            reverse("audit_log", args=[slug]),
        ):
            assert client.get(url).status_code == 200


# --- S5.5: sort, filter, totals ---------------------------------------------------------------


@pytest.fixture
def platform(db) -> None:
    """Five organizations, one of each kind."""
    make_org("Alpha", pending=5, synced_ago=timedelta(hours=3))
    erring("Bravo", failed=3)
    overdue("Charlie")
    make_org("Delta", connector="business_central", pending=1, synced_ago=timedelta(hours=1))
    make_org("Echo", connector=None, synced_ago=None)


def order(page: str) -> list[str]:
    return list(rows(page))


def test_s5_5_the_worst_health_comes_first_by_default(client, platform) -> None:
    assert order(overview_page(client)) == ["charlie", "bravo", "alpha", "delta", "echo"]


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("name", ["alpha", "bravo", "charlie", "delta", "echo"]),
        ("-name", ["echo", "delta", "charlie", "bravo", "alpha"]),
        ("health", ["charlie", "bravo", "alpha", "delta", "echo"]),
        ("-health", ["echo", "alpha", "delta", "bravo", "charlie"]),
        # Oldest first: never synced, 30 hours, 3 hours, then the two an hour ago by name.
        ("last_sync", ["echo", "charlie", "alpha", "bravo", "delta"]),
        ("-pending", ["alpha", "charlie", "delta", "bravo", "echo"]),
        ("pending", ["bravo", "echo", "delta", "charlie", "alpha"]),
        ("-errors", ["bravo", "alpha", "charlie", "delta", "echo"]),
    ],
)
def test_s5_5_the_table_sorts_by_each_column(client, platform, sort, expected) -> None:
    assert order(overview_page(client, sort=sort)) == expected


def test_s5_5_sort_headers_are_links_that_say_their_state_with_aria_sort(client, platform) -> None:
    page = overview_page(client, sort="-pending", health="green")
    sorted_header = re.findall(r'<th scope="col" aria-sort="(\w+)"[^>]*>\s*<a href="([^"]+)"', page)
    # The sorted column says so; following it again reverses it and keeps the filter.
    assert sorted_header == [("descending", "?health=green&amp;sort=pending")]
    assert 'href="?health=green&amp;sort=name" id="sort-name"' in page
    assert 'href="?health=green&amp;sort=-errors" id="sort-errors"' in page
    assert 'Pending<span class="visually-hidden">, sort ascending</span>' in page


def test_s5_5_filter_by_health(client, platform) -> None:
    assert order(overview_page(client, health="green")) == ["alpha", "delta"]
    assert order(overview_page(client, health="red")) == ["charlie"]
    assert order(overview_page(client, health="grey")) == ["echo"]
    assert order(overview_page(client, health="stale")) == ["charlie"]


def test_s5_5_filter_by_connector_and_name(client, platform) -> None:
    assert order(overview_page(client, connector="business_central")) == ["delta"]
    assert order(overview_page(client, connector="none")) == ["echo"]
    assert order(overview_page(client, q="HARL")) == ["charlie"]
    assert order(overview_page(client, q="a", connector="xledger", sort="-name")) == [
        "charlie",
        "bravo",
        "alpha",
    ]


def test_s5_5_the_filters_stay_in_the_form_and_say_how_many_match(client, platform) -> None:
    page = overview_page(client, q="a", health="green", sort="-pending")
    assert 'name="q" value="a"' in page
    assert '<option value="green" selected>' in page
    assert '<input type="hidden" name="sort" value="-pending"' in page
    assert "2 of 5 organizations match the filters." in page
    assert 'href="/orgs/?sort=-pending" id="clear-filters"' in page


def test_s5_5_nonsense_in_the_url_is_ignored_not_an_error(client, platform) -> None:
    page = overview_page(client, health="purple", connector="sap", sort="shoe-size")
    assert order(page) == ["charlie", "bravo", "alpha", "delta", "echo"]


def test_s5_5_no_match_says_so(client, platform) -> None:
    page = overview_page(client, q="zulu")
    assert "No organization matches these filters." in page


def test_s5_5_platform_totals_count_every_organization_whatever_the_filter(
    client, platform
) -> None:
    page = overview_page(client, health="green")
    totals = dict(re.findall(r'<dd id="total-([\w]+)">(\d+)</dd>', page))
    assert totals == {
        "organizations": "5",
        "enabled": "4",
        "pending": "9",  # 5 + 3 + 1
        "failed": "3",
        "red": "1",
        "amber": "1",
        "setup": "0",
        "idle": "0",
        "green": "2",
        "grey": "1",
        "stale": "1",
    }


# --- S5.6: live -----------------------------------------------------------------------------------


def live_url(page: str) -> str:
    found = re.search(r'<section id="overview-live"[^>]*hx-get="([^"]+)"', page, re.S)
    assert found is not None
    return found.group(1).replace("&amp;", "&")


def test_s5_6_the_table_polls_its_fragment_with_the_sort_filters_and_version(
    client, platform
) -> None:
    page = overview_page(client, sort="-errors", connector="xledger")
    url = live_url(page)
    assert url.startswith(reverse("overview_live") + "?connector=xledger&sort=-errors&v=")
    assert 'hx-trigger="every 2s, live-refresh"' in page
    assert 'hx-swap="outerHTML"' in page
    assert "data-live" in page


def test_s5_6_an_unchanged_poll_answers_204_after_one_query(client, platform) -> None:
    # The version carries the clock's minute: held still, so a minute turning between the
    # page and the poll (a slow machine) cannot make the poll render.
    with time_machine.travel(timezone.now(), tick=False):
        url = live_url(overview_page(client))
        client.get(url)  # the session and user are loaded once per request either way
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
    assert response.status_code == 204
    assert response.content == b""
    ours = [q["sql"] for q in captured if "django_session" not in q["sql"]]
    ours = [sql for sql in ours if '"auth_user"' not in sql]
    # And the second factor that verified the session (django-otp checks it still exists).
    ours = [sql for sql in ours if '"otp_totp_totpdevice"' not in sql]
    assert len(ours) == 1 and "SUM" in ours[0], ours


def test_s5_6_a_finished_sync_elsewhere_reaches_the_poll_and_is_announced(client, platform) -> None:
    url = live_url(overview_page(client, sort="-errors"))
    bravo = Organization.objects.get(slug="bravo")
    # Another process finishes a sync: two more records fail.
    add_records(bravo, "failed", 2)
    add_finished_run(bravo, timedelta(0), status="partial", failed=2)
    Organization.touch(bravo.pk)

    response = client.get(url)
    assert response.status_code == 200
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<section id="overview-live"')
    assert "<html" not in fragment
    assert order(fragment)[0] == "bravo"
    assert visible_text(cells(rows(fragment)["bravo"])[6]) == "5"
    assert '<dd id="total-failed">5</dd>' in fragment
    assert (
        '<div id="announcer" hx-swap-oob="innerHTML">Overview updated: '
        "1 organization overdue, 1 organization with errors.</div>"
    ) in fragment
    # The next poll carries the new version: nothing changed since, so 204.
    assert client.get(live_url(fragment)).status_code == 204


def test_s5_6_a_new_organization_changes_the_version(client, platform) -> None:
    url = live_url(overview_page(client))
    healthy("Foxtrot")
    fragment = client.get(url).content.decode()
    assert "foxtrot" in rows(fragment)


def test_s5_6_the_clock_alone_re_renders_once_a_minute_without_an_announcement(
    client, platform
) -> None:
    url = live_url(overview_page(client))
    with time_machine.travel(timezone.now() + timedelta(seconds=CLOCK_TICK_SECONDS)):
        response = client.get(url)
    assert response.status_code == 200
    assert "announcer" not in response.content.decode()


# --- queries do not grow with the organizations ---------------------------------------------------


def _page_queries(client: Client, **query) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(reverse("overview"), query).status_code == 200
    return len(captured)


def _busy_organizations(start: int, stop: int) -> None:
    """Organizations with integrations of both kinds and a schedule, records and runs."""
    for n in range(start, stop):
        organization = make_org(
            f"Org {n:02}",
            connector="xledger" if n % 2 else "business_central",
            pending=n % 3,
            pending_age=timedelta(hours=n % 5),
            failed=n % 4,
            synced_ago=timedelta(hours=n),
        )
        if n % 3 == 0:
            Integration.objects.filter(organization=organization).update(
                schedule="daily", schedule_time="02:00"
            )
        add_finished_run(organization, timedelta(hours=n + 30), status="failed")


def test_the_overview_costs_the_same_queries_for_5_or_50_organizations(client) -> None:
    _busy_organizations(0, 5)
    few = _page_queries(client)
    sorted_few = _page_queries(client, sort="-errors", q="org", health="amber")
    _busy_organizations(5, 50)
    assert _page_queries(client) == few
    assert _page_queries(client, sort="-errors", q="org", health="amber") == sorted_few
    assert len(rows(overview_page(client))) == 50


def test_the_live_fragment_costs_the_same_queries_for_5_or_50_organizations(client) -> None:
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get(reverse("overview_live"), {"v": "stale"}).status_code == 200
        return len(captured)

    _busy_organizations(0, 5)
    few = queries()
    _busy_organizations(5, 50)
    assert queries() == few


@pytest.mark.parametrize("language", ["en", "nb"])
def test_the_rows_fast_dates_read_as_djangos_date_filter_would(language) -> None:
    from django.utils import dateformat, translation
    from django.utils.formats import get_format

    from accounting_sync.views.overview import strftime_for

    moment = timezone.localtime(timezone.now().replace(month=3, day=5, hour=7, minute=4))
    with translation.override(language):
        short = get_format("SHORT_DATETIME_FORMAT")
        pattern = strftime_for(short)
        assert pattern is not None
        assert moment.strftime(pattern) == dateformat.format(moment, short)
    # Anything beyond plain numbers is left to Django.
    assert strftime_for("j. F Y H:i") is None
    assert strftime_for("P") is None
