from django.core.management.base import BaseCommand, CommandError

from core.events import TrailKind, record_action
from organizations.models import ApiKey, Organization


class Command(BaseCommand):
    help = (
        "Issue a new API key for an organization (the previous one stops working) "
        "and print it. It is not stored, so this is the only time it is shown."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("organization", help="the organization's slug, e.g. blindeforbundet")

    def handle(self, *args, organization: str, **options) -> None:
        try:
            org = Organization.objects.get(slug=organization)
        except Organization.DoesNotExist:
            slugs = ", ".join(Organization.objects.values_list("slug", flat=True)) or "none"
            raise CommandError(f"No organization {organization!r} (known: {slugs}).") from None
        key, raw_key = ApiKey.issue(org)
        record_action(None, org, TrailKind.API_KEY_ISSUED, prefix=key.prefix, via="command line")
        # Only the key on stdout, so that `KEY=$(manage.py issue_api_key …)` works.
        self.stdout.write(raw_key)
