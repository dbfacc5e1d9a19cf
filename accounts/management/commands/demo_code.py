"""The code the demo global admin's authenticator would show now (`make run` only).

Global admins must log in with two factors; a newcomer trying the demo may have no
authenticator app at hand. This prints the code of the demo's own, publicly known key,
and of nothing else: it refuses with DEBUG off and for any device with another key.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounting_sync.management.commands.seed_demo import DEMO_TOTP_KEY


class Command(BaseCommand):
    help = "Print the current two-factor code of the demo global admin (DEBUG only)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", nargs="?", default="global-admin")

    def handle(self, *args, username: str, **options) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_code is for the demo; it runs with DEBUG=true only.")
        device = TOTPDevice.objects.filter(
            user__username=username, key=DEMO_TOTP_KEY, confirmed=True
        ).first()
        if device is None:
            raise CommandError(f"{username} has no demo authenticator; run seed_demo first.")
        code = totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits)
        self.stdout.write(f"{code:0{device.digits}d}\n")
