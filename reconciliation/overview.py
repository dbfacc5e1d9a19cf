"""The reconciliation's column on the global overview (issue 15 item 3): each organization's
latest reading in a few words, linking to its reconciliation page.

Registered from `ReconciliationConfig.ready` (accounting_sync's overview cannot import this
app). One query for every shown organization: the latest reading of each (a subquery per
organization) with its open problems counted (a subquery per reading), so the overview's
query count does not grow with the organizations (tests/test_overview.py measures it).
"""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext, ngettext

from organizations.models import Organization
from reconciliation.models import Item, Reconciliation

Status = Reconciliation.Status
SLUG = "__slug__"
CELL = (
    '<a href="{url}" id="reconciliation-{slug}" class="state {css}">'
    '<span aria-hidden="true">{icon} </span>{words}'
    '<span class="visually-hidden"> {of_org}</span></a>'
)


def latest_readings(organizations: list[Organization]) -> dict[int, Reconciliation]:
    """Each organization's newest reading, annotated with `open_problems`: one query."""
    if not organizations:
        return {}
    newest = (
        Reconciliation.objects.filter(organization=OuterRef("pk"))
        .order_by("-created_at", "-id")
        .values("pk")[:1]
    )
    latest = (
        Organization.objects.filter(pk__in=[organization.pk for organization in organizations])
        .annotate(latest=Subquery(newest))
        .values("latest")
    )
    open_problems = (
        Item.objects.filter(
            reconciliation=OuterRef("pk"),
            klass__in=Item.Klass.problems(),
            resolution=Item.Resolution.NONE,
        )
        .order_by()
        .values("reconciliation")
        .annotate(n=Count("id"))
        .values("n")
    )
    readings = (
        Reconciliation.objects.filter(pk__in=latest)
        .annotate(
            open_problems=Coalesce(Subquery(open_problems, output_field=IntegerField()), Value(0))
        )
        .only("id", "organization_id", "status", "counts")
    )
    return {reading.organization_id: reading for reading in readings}


class Cells:
    """The words translated and the URL reversed once per page, not once per row."""

    def __init__(self) -> None:
        self.url = reverse("reconciliation", args=[SLUG])
        self.words = {
            "none": escape(gettext("None yet")),
            "running": escape(gettext("Running")),
            "failed": escape(gettext("Reading failed")),
            "matched": escape(gettext("Matched")),
            "resolved": escape(gettext("Differences resolved")),
        }
        self.of_org = escape(gettext("reconciliation of %(name)s"))

    def __call__(self, organization: Organization, reading: Reconciliation | None) -> SafeString:
        icon, css, words = self._said(reading)
        slug = escape(organization.slug)
        # Safe: every value is escaped here or in __init__, or is a number.
        return mark_safe(
            CELL.format(
                url=self.url.replace(SLUG, slug),
                slug=slug,
                css=css,
                icon=icon,
                words=words,
                of_org=self.of_org % {"name": escape(organization.name)},
            )
        )

    def _said(self, reading: Reconciliation | None) -> tuple[str, str, str]:
        if reading is None:
            return "•", "", self.words["none"]
        if reading.status in (Status.QUEUED, Status.RUNNING):
            return "⟳", "state-pending", self.words["running"]
        if reading.status == Status.FAILED:
            return "✗", "state-failed", self.words["failed"]
        open_problems = int(getattr(reading, "open_problems", 0))
        if open_problems:
            words = ngettext(
                "%(count)d difference to look at", "%(count)d differences to look at", open_problems
            )
            return "⚠", "state-failed", escape(words % {"count": open_problems})
        if reading.problems:
            return "✓", "state-synced", self.words["resolved"]
        return "✓", "state-synced", self.words["matched"]


def overview_cells(organizations: list[Organization]) -> dict[int, SafeString]:
    readings = latest_readings(organizations)
    cell = Cells()
    return {
        organization.pk: cell(organization, readings.get(organization.pk))
        for organization in organizations
    }
