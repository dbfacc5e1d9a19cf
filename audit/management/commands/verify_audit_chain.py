from django.core.management.base import BaseCommand, CommandError

from audit.models import ChainCheckpoint
from organizations.models import Organization

LABELS = {
    ChainCheckpoint.Chain.SYNC_LOG: "sync log",
    ChainCheckpoint.Chain.ADMIN_TRAIL: "administrative trail",
}


class Command(BaseCommand):
    help = (
        "Recompute the hash chains of the sync log and the administrative trail and name "
        "the first row that was changed or removed behind the application's back. The "
        "result is kept, so the audit pages' badge shows it."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--organization", help="only this organization's slug")
        parser.add_argument(
            "--since-checkpoint",
            action="store_true",
            help="only the rows added since the last verification (faster; finds no "
            "change to rows verified before)",
        )

    def handle(
        self, *args, organization: str | None = None, since_checkpoint=False, **options
    ) -> None:
        organizations = Organization.objects.order_by("pk")
        if organization:
            organizations = organizations.filter(slug=organization)
            if not organizations:
                raise CommandError(f"No organization {organization!r}.")
        chains: list[tuple[str, int | None]] = [(org.name, org.pk) for org in organizations]
        if not organization:
            chains.append(("platform (no organization)", None))
        broken = []
        for name, pk in chains:
            for chain, label in LABELS.items():
                checkpoint = ChainCheckpoint.for_chain(pk, chain)
                failure = checkpoint.verify(whole=not since_checkpoint).broken
                if failure:
                    broken.append(f"{name}, {label}: row {failure.row_id}: {failure.reason}.")
                else:
                    self.stdout.write(f"{name}, {label}: {checkpoint.rows_verified} rows intact.")
        if broken:
            raise CommandError("The chain is broken.\n" + "\n".join(broken))
