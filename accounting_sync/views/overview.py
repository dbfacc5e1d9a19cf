"""The global overview (S4.2, S5): every organization on one page, for global admins.

Every organization is read in one query (`health.with_facts`) and assessed in Python, so
the page costs the same number of queries for 5 organizations or 500. Sorting by health
and filtering by it happen after assessment, which is cheap for hundreds of rows; the
platform totals are over every organization, whatever the filters show.

The table and totals are a live part (S5.6): they poll `overview_live`, whose version is
one aggregate over organizations (see `current_version`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import dateformat, timezone
from django.utils.formats import get_format
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET

from accounting_sync import health
from accounting_sync.models import WorkerHeartbeat
from core import live
from integrations.models import Integration
from organizations.access import organizations_for, require_global_admin
from organizations.models import Organization

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

# Beat asks every worker to check in each minute; past this, say none is running.
WORKER_SILENCE = timedelta(minutes=5)
# Health also changes with the clock alone (a connector turns stale after 24 hours), which
# no organization's live_version sees: the version carries the minute too, so an open page
# is re-rendered at most once a minute for time's sake.
CLOCK_TICK_SECONDS = 60
NO_INTEGRATION = "none"
# What the page reads of each organization and its integration (health.facts and the
# schedule included); credentials and the ERP's lists stay in the database. A field
# missing here costs a query per row, which the query-count tests would catch.
READ = (
    "name",
    "slug",
    "time_zone",
    "live_version",
    *(
        f"integration__{field}"
        for field in (
            "connector",
            "enabled",
            "connection_verified_at",
            "schedule",
            "schedule_time",
            "schedule_weekday",
            "schedule_day",
            "schedule_cron",
        )
    ),
)
STALE = "stale"


@dataclass(frozen=True)
class Column:
    """A column that an app above this one adds to the table (the reconciliation's summary),
    registered from its AppConfig.ready with `add_column`: the layers keep accounting_sync
    from importing those apps. `cells` reads the shown organizations in a fixed number of
    queries, however many there are, and returns each one's cell by organization id, as
    markup in which every value is escaped (a missing id is an empty cell)."""

    key: str
    label: StrOrPromise
    cells: Callable[[list[Organization]], dict[int, SafeString]]


COLUMNS: list[Column] = []


def add_column(column: Column) -> None:
    if all(known.key != column.key for known in COLUMNS):
        COLUMNS.append(column)


@dataclass(frozen=True)
class Row:
    """One organization as the overview shows it."""

    organization: Organization
    facts: health.Facts
    health: health.Health

    @classmethod
    def assessed(cls, organization: Organization, now: datetime) -> Row:
        """From an organization annotated by `health.with_facts`: no query."""
        facts = health.facts(organization, now)
        return cls(organization, facts, health.assess(facts, now))

    @property
    def integration(self) -> Integration | None:
        return getattr(self.organization, "integration", None)

    @property
    def connector(self) -> str:
        return self.integration.connector if self.integration else NO_INTEGRATION

    @property
    def highlight(self) -> str:
        """S5.2: red when overdue, amber when any record failed (even if switched off)."""
        if self.health.level is health.RED:
            return "red"
        if self.health.level is health.AMBER or self.facts.failed:
            return "amber"
        return ""

    @property
    def severity(self) -> int:
        return health.SEVERITY[self.health.level.key]


@dataclass(frozen=True)
class Totals:
    """The platform totals above the table (S5.5), over every organization."""

    organizations: int
    enabled: int
    pending: int
    failed: int
    stale: int
    per_level: list[tuple[health.Level, int]]  # worst first

    @classmethod
    def of(cls, rows: list[Row]) -> Totals:
        levels = Counter(row.health.level.key for row in rows)
        ordered = sorted(health.LEVELS.values(), key=lambda level: health.SEVERITY[level.key])
        return cls(
            organizations=len(rows),
            enabled=sum(1 for row in rows if row.facts.enabled),
            pending=sum(row.facts.pending for row in rows),
            failed=sum(row.facts.failed for row in rows),
            stale=sum(1 for row in rows if row.health.stale),
            per_level=[(level, levels[level.key]) for level in ordered],
        )

    def announcement(self) -> str:
        """What a screen reader hears when the overview changed (S5.6), problems first."""
        count = {level.key: n for level, n in self.per_level}
        overdue, erring = count["red"], count["amber"]
        if not overdue and not erring:
            return gettext("Overview updated: no organization is overdue or has errors.")
        parts = []
        if overdue:
            parts.append(
                ngettext(
                    "%(count)d organization overdue", "%(count)d organizations overdue", overdue
                )
                % {"count": overdue}
            )
        if erring:
            parts.append(
                ngettext(
                    "%(count)d organization with errors",
                    "%(count)d organizations with errors",
                    erring,
                )
                % {"count": erring}
            )
        return gettext("Overview updated: %(problems)s.") % {"problems": ", ".join(parts)}


# --- sorting -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sort:
    """A sortable column: its label, its key, and which way a first click sorts it."""

    key: str
    label: StrOrPromise
    value: Callable[[Row], Any]
    descending_first: bool = False  # the biggest counts are what an admin looks for


def _last_sync_key(row: Row) -> tuple[bool, datetime]:
    # Never synced sorts as the oldest of all.
    last = row.facts.last_sync_at
    return (last is not None, last or datetime.min.replace(tzinfo=UTC))


SORTS = {
    sort.key: sort
    for sort in (
        Sort("name", _("Organization"), lambda row: row.organization.name.casefold()),
        # Ascending health is worst first: red, amber, green, grey (health.SEVERITY).
        Sort("health", _("Health"), lambda row: row.severity),
        Sort("last_sync", _("Last sync"), _last_sync_key),
        Sort("pending", _("Pending"), lambda row: row.facts.pending, descending_first=True),
        Sort("errors", _("Errors"), lambda row: row.facts.failed, descending_first=True),
    )
}
DEFAULT_SORT = "health"  # problems first: what a global admin opens the page for


def parse_sort(value: str) -> tuple[str, bool]:
    """`?sort=pending` or `?sort=-pending` → (key, descending); anything else: the default."""
    key = value.removeprefix("-")
    if key not in SORTS:
        return DEFAULT_SORT, False
    return key, value.startswith("-")


def sorted_rows(rows: Iterable[Row], key: str, descending: bool) -> list[Row]:
    by_name = sorted(rows, key=SORTS["name"].value)  # ties read alphabetically
    if key == "name":
        return by_name[::-1] if descending else by_name
    return sorted(by_name, key=SORTS[key].value, reverse=descending)


# --- filters ---------------------------------------------------------------------------------


def _health_choices() -> list[tuple[str, object]]:
    ordered = sorted(health.LEVELS.values(), key=lambda level: health.SEVERITY[level.key])
    return [
        ("", _("Any")),
        *((level.key, level.word) for level in ordered),
        (STALE, _("Stale: no sync for 24 hours")),
    ]


def _connector_choices() -> list[tuple[str, object]]:
    return [("", _("Any")), *Integration.Connector.choices, (NO_INTEGRATION, _("Not set up"))]


class OverviewFilters(forms.Form):
    """S5.5: what the table is narrowed to; a GET form, so the URL keeps it."""

    q = forms.CharField(label=_("Name contains"), required=False, max_length=200)
    health = forms.ChoiceField(label=_("Health"), required=False, choices=_health_choices)
    connector = forms.ChoiceField(
        label=_("Accounting system"), required=False, choices=_connector_choices
    )
    sort = forms.CharField(required=False, max_length=20, widget=forms.HiddenInput)

    def values(self) -> dict[str, str]:
        """The valid, non-empty choices (invalid ones are ignored): what links carry along."""
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}

    @property
    def narrows(self) -> bool:
        return any(name in self.values() for name in ("q", "health", "connector"))

    def ordering(self) -> tuple[str, bool]:
        return parse_sort(self.values().get("sort", ""))

    def keeps(self, row: Row, wanted: dict[str, str]) -> bool:
        name = wanted.get("q", "").casefold()
        if name and name not in row.organization.name.casefold():
            return False
        if "connector" in wanted and row.connector != wanted["connector"]:
            return False
        if wanted.get("health") == STALE:
            return row.health.stale
        return "health" not in wanted or row.health.level.key == wanted["health"]


# --- the overview ------------------------------------------------------------------------------


def version_of(count: int, total: int, now: datetime) -> str:
    """Organizations' count and summed live_version (each only goes up), and the minute."""
    return f"{count}.{total}.{int(now.timestamp()) // CLOCK_TICK_SECONDS}"


def data_part(version: str | None) -> str:
    """The version without its clock: what changed in the database, not the time."""
    return (version or "").rpartition(".")[0]


def current_version(user, now: datetime) -> str:
    """One aggregate query: what an unchanged poll costs."""
    totals = organizations_for(user).aggregate(count=Count("id"), total=Sum("live_version"))
    return version_of(totals["count"], totals["total"] or 0, now)


@dataclass(frozen=True)
class Overview:
    rows: list[Row]  # every organization, in the order shown
    totals: Totals
    version: str  # of the very rows read, so a poll never misses a change made meanwhile

    @classmethod
    def load(cls, user, filters: OverviewFilters, now: datetime) -> Overview:
        organizations = list(health.with_facts(organizations_for(user).only(*READ)))
        rows = [Row.assessed(organization, now) for organization in organizations]
        wanted = filters.values()
        shown = [
            row for row in sorted_rows(rows, *filters.ordering()) if filters.keeps(row, wanted)
        ]
        total = sum(organization.live_version for organization in organizations)
        return cls(shown, Totals.of(rows), version_of(len(organizations), total, now))


@dataclass(frozen=True)
class Header:
    """A column header: a real link that sorts, and its `aria-sort` state."""

    key: str
    label: StrOrPromise
    href: str
    aria_sort: str  # "ascending", "descending" or "" (not sorted by this column)
    next_descending: bool  # which way following the link sorts

    @property
    def action(self) -> str:
        return gettext("sort descending") if self.next_descending else gettext("sort ascending")


def headers(filters: OverviewFilters) -> dict[str, Header]:
    wanted = filters.values()
    current, descending = filters.ordering()
    result = {}
    for key, sort in SORTS.items():
        if key == current:
            next_descending = not descending
            aria_sort = "descending" if descending else "ascending"
        else:
            next_descending = sort.descending_first
            aria_sort = ""
        query = {**wanted, "sort": f"-{key}" if next_descending else key}
        result[key] = Header(key, sort.label, f"?{urlencode(query)}", aria_sort, next_descending)
    return result


# Django date format characters that mean the same as a strftime directive (numbers only,
# so the result does not depend on the locale's month names).
STRFTIME = {"Y": "%Y", "y": "%y", "m": "%m", "d": "%d", "H": "%H", "i": "%M", "s": "%S"}


def strftime_for(django_format: str) -> str | None:
    """The strftime equivalent of a numeric Django date format, or None if it has more.

    Why: Django's `date` formatting costs about 20 µs a date, a fifth of the overview's
    rows; strftime does the same for the short formats ("Y-m-d H:i", "d.m.Y H:i") in 2.
    """
    parts = []
    for char in django_format:
        if char in STRFTIME:
            parts.append(STRFTIME[char])
        elif char in " .-/:,":
            parts.append(char)
        else:
            return None
    return "".join(parts)


class RowMarkup:
    """The table's rows as HTML, made here rather than in the template.

    Measured (issue 14 item 4, "plain code where speed allows"): the same rows rendered by
    the template, tuned (words translated once, dates through strftime), took about 325 ms
    for 500 organizations against about 80 ms here, on the same machine and data
    (bench/pages_bench.py). Speed does not allow it, so this stays.

    Why: profiled with 500 organizations, the template engine spent about 0.3 ms on each
    row (variable lookups, four {% url %} and several translation tags): most of the
    page's time. Here the words are translated, escaped and the URLs reversed once per
    page, and each row escapes only what is its own (name, slug, date) once.
    Every value that goes into the markup passes through `escape` or is a number.
    """

    SLUG = "__slug__"  # stands for each organization's slug in the reversed URLs
    ROW = (
        '<tr id="org-{slug}" class="{classes}" data-health="{level}">'
        '<th scope="row"><a href="{dashboard}" id="dashboard-{slug}">{name}</a></th>'
        '<td><span class="overview-health overview-health-{level}">'
        '<span aria-hidden="true">{icon}</span> {word}</span></td>'
        "<td>{connector}</td><td>{enabled}</td><td>{last_sync}{stale}</td>"
        '<td class="num">{pending}</td><td class="num">{errors}</td>{extra}'
        '<td><ul class="plain overview-links">'
        '<li><a href="{failed_url}" id="failed-{slug}">{failed_records}{of_org}</a></li>'
        '<li><a href="{audit_url}" id="audit-{slug}">{audit_log}{of_org}</a></li>'
        '<li><a href="{api_key_url}" id="api-key-{slug}">{api_key}{of_org}</a></li>'
        "</ul></td></tr>\n"
    )
    ERRORS = (
        '<a href="{url}" id="errors-{slug}" class="overview-errors">'
        '<span aria-hidden="true">⚠ </span>{count}<span class="visually-hidden"> {words}</span></a>'
    )

    def __init__(self, extra: list[dict[int, SafeString]] | None = None) -> None:
        # The added columns' cells (COLUMNS), each by organization id.
        self.extra = extra or []
        words = {
            "enabled": gettext("Enabled"),
            "disabled": gettext("Disabled"),
            "never": gettext("Never"),
            "not_set_up": gettext("Not set up"),
            "failed_records": gettext("Failed records"),
            "audit_log": gettext("Audit log"),
            "api_key": gettext("API key"),
        }
        self.words = {key: escape(word) for key, word in words.items()}
        self.stale = (
            '<strong class="overview-stale"><span aria-hidden="true">⚠</span> '
            f"{escape(gettext('Stale: no sync for more than 24 hours'))}</strong>"
        )
        self.levels = {
            # str(): the lazy word is translated once here, not in every row.
            key: {"icon": escape(level.icon), "word": escape(str(level.word))}
            for key, level in health.LEVELS.items()
        }
        self.connectors = {key: escape(label) for key, label in Integration.Connector.choices}
        self.urls = {
            name: reverse(name, args=[self.SLUG])
            for name in ("organization_home", "failed_records", "audit_log", "api_keys")
        }
        self.date_format = get_format("SHORT_DATETIME_FORMAT")
        self.strftime = strftime_for(self.date_format)
        # Each link names its organization for a screen reader's list of links (S5.4).
        self.of_org = f'<span class="visually-hidden"> {escape(gettext("of %(name)s"))}</span>'

    def __call__(self, row: Row) -> SafeString:
        org, facts, integration = row.organization, row.facts, row.integration
        level = row.health.level
        slug = escape(org.slug)
        name = escape(org.name)
        url = {key: pattern.replace(self.SLUG, slug) for key, pattern in self.urls.items()}
        # Safe: every value below is escaped (here or in __init__) or is a number.
        return mark_safe(
            self.ROW.format(
                slug=slug,
                classes=f"overview-row overview-row-{row.highlight}"
                if row.highlight
                else "overview-row",
                level=level.key,
                dashboard=url["organization_home"],
                name=name,
                **self.levels[level.key],
                connector=self.connectors.get(integration.connector, "")
                if integration
                else self.words["not_set_up"],
                enabled=self.words[
                    "enabled" if integration and integration.enabled else "disabled"
                ],
                last_sync=self._last_sync(facts.last_sync_at),
                stale=self.stale if row.health.stale else "",
                pending=int(facts.pending),
                errors=self._errors(slug, name, url["failed_records"], int(facts.failed)),
                failed_url=url["failed_records"],
                audit_url=url["audit_log"],
                api_key_url=url["api_keys"],
                failed_records=self.words["failed_records"],
                audit_log=self.words["audit_log"],
                api_key=self.words["api_key"],
                of_org=self.of_org % {"name": name},
                extra="".join(f"<td>{cells.get(org.pk, '')}</td>" for cells in self.extra),
            )
        )

    def _last_sync(self, moment: datetime | None) -> str:
        if moment is None:
            return self.words["never"]
        local = timezone.localtime(moment)
        if self.strftime:
            shown = escape(local.strftime(self.strftime))
        else:
            shown = escape(dateformat.format(local, self.date_format))
        return f'<time datetime="{local.isoformat()}">{shown}</time>'

    def _errors(self, slug: str, name: str, url: str, failed: int) -> str | int:
        """S4.4: the error count links to the error details, said in words too."""
        if not failed:
            return 0
        words = ngettext(
            "failed record of %(name)s: see the errors",
            "failed records of %(name)s: see the errors",
            failed,
        )
        return self.ERRORS.format(
            url=url, slug=slug, count=failed, words=escape(words) % {"name": name}
        )


def _context(request: HttpRequest, now: datetime) -> dict[str, Any]:
    filters = OverviewFilters(request.GET)
    overview = Overview.load(request.user, filters, now)
    wanted = filters.values()
    sort_only = {"sort": wanted["sort"]} if "sort" in wanted else {}
    shown = [row.organization for row in overview.rows]
    markup = RowMarkup([column.cells(shown) for column in COLUMNS])
    return {
        "filters": filters,
        "overview": overview,
        "row_html": [markup(row) for row in overview.rows],
        "headers": headers(filters),
        "extra_columns": COLUMNS,
        "column_count": 8 + len(COLUMNS),
        "clear_url": f"{reverse('overview')}?{urlencode(sort_only)}".rstrip("?"),
        "live_url": f"{reverse('overview_live')}?{urlencode({**wanted, 'v': overview.version})}",
    }


@login_required
@require_GET
def overview(request: HttpRequest) -> HttpResponse:
    """Every organization on one page, for global admins. Queries do not grow with them."""
    require_global_admin(request.user)
    now = timezone.now()
    heartbeat = WorkerHeartbeat.objects.first()
    worker_silent = heartbeat is None or now - heartbeat.seen_at > WORKER_SILENCE
    context = _context(request, now)
    context.update(heartbeat=heartbeat, worker_silent=worker_silent)
    return render(request, "accounting_sync/overview.html", context)


@login_required
@require_GET
@live.poll
def overview_live(request: HttpRequest) -> HttpResponse:
    """The live table and totals (S5.6): 204 after one aggregate query when nothing changed."""
    require_global_admin(request.user)
    now = timezone.now()
    if live.unchanged(request, current_version(request.user, now)):
        return live.no_change()
    context = _context(request, now)
    overview: Overview = context["overview"]
    # Announce what the database changed, not the clock's minute.
    if data_part(request.GET.get("v")) != data_part(overview.version):
        context["announce"] = overview.totals.announcement()
    return render(request, "accounting_sync/overview.html#overview-live", context)
