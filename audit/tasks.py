"""Chain verification on a worker (S8.6): pages show the stored result, never walk a chain."""

from __future__ import annotations

from collections.abc import Iterator

from celery import shared_task

from audit.models import ChainCheckpoint
from organizations.models import Organization


def every_chain() -> Iterator[tuple[int | None, str]]:
    """Each organization's two chains, and the platform's administrative trail."""
    yield None, ChainCheckpoint.Chain.ADMIN_TRAIL
    for organization_id in Organization.objects.order_by("pk").values_list("pk", flat=True):
        for chain in ChainCheckpoint.Chain.values:
            yield organization_id, chain


@shared_task
def verify_chains(whole: bool = False) -> None:
    """Beat: every chain from where its last verification stopped; nightly (whole=True)
    from the first row, which is what finds a row changed before the checkpoint."""
    for organization_id, chain in every_chain():
        ChainCheckpoint.for_chain(organization_id, chain).verify(whole=whole)


@shared_task
def verify_organization(organization_id: int) -> None:
    """Verify now: both of an organization's chains, whole, reporting progress."""
    for chain in ChainCheckpoint.Chain.values:
        ChainCheckpoint.for_chain(organization_id, chain).verify(whole=True, requested=True)
