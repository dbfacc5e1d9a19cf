from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from integrations.crypto import CredentialsUnreadable, reencrypt
from integrations.models import Integration


class Command(BaseCommand):
    help = (
        "Re-encrypt every integration's credentials under the first key of "
        "FIELD_ENCRYPTION_KEYS. Run after putting a new key first; then the old "
        "keys can be removed."
    )

    def handle(self, *args, **options) -> None:
        done = 0
        with transaction.atomic():
            for integration in Integration.objects.select_for_update().exclude(
                credentials_ciphertext=""
            ):
                try:
                    integration.credentials_ciphertext = reencrypt(
                        integration.credentials_ciphertext
                    )
                except CredentialsUnreadable as error:
                    raise CommandError(
                        f"{integration.organization}: {error} Nothing was changed."
                    ) from None
                integration.save(update_fields=["credentials_ciphertext"])
                done += 1
        self.stdout.write(f"Re-encrypted the credentials of {done} integration(s).")
