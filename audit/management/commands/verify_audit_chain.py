from django.core.management.base import BaseCommand, CommandError

from accounting_sync.models import SyncLog
from audit.chain import verify_chain
from audit.models import AdminAction
from integrations.models import Organization


class Command(BaseCommand):
    help = (
        "Recompute the hash chains of the sync log and the administrative trail and name "
        "the first row that was changed or removed behind the application's back."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--organization", help="only this organization's slug")

    def handle(self, *args, organization: str | None = None, **options) -> None:
        organizations = Organization.objects.order_by("pk")
        if organization:
            organizations = organizations.filter(slug=organization)
            if not organizations:
                raise CommandError(f"No organization {organization!r}.")
        chains = [(org.name, org.pk) for org in organizations]
        if not organization:
            chains.append(("platform (no organization)", None))
        broken = []
        for name, pk in chains:
            for model, label in ((SyncLog, "sync log"), (AdminAction, "administrative trail")):
                checked, failure = verify_chain(model, pk)
                if failure:
                    broken.append(f"{name}, {label}: row {failure.row_id}: {failure.reason}.")
                else:
                    self.stdout.write(f"{name}, {label}: {checked} rows intact.")
        if broken:
            raise CommandError("The chain is broken.\n" + "\n".join(broken))
