"""The second factor: who needs it, and the devices django-otp keeps for it.

Each person has at most one authenticator app (a TOTPDevice) and, with it, one set of
recovery codes (a StaticDevice whose tokens are used up one by one). Global admins must
have it; an organization can require it of its admins (Organization.require_two_factor);
anyone else may turn it on, and then it is asked for at every login too.
"""

from __future__ import annotations

import base64
import re

import segno
from django.db import transaction
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from organizations.models import Membership

RECOVERY_CODE_COUNT = 10
APP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"
_TOTP_CODE = re.compile(r"\d{6}")


def required_for(user) -> bool:
    """Global admins always; an organization's admins where it asks for it (not auditors)."""
    if user.is_superuser:
        return True
    return Membership.objects.filter(
        user=user, role=Membership.Role.ADMIN, organization__require_two_factor=True
    ).exists()


def has_device(user) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed=True).exists()


def pending_device(user) -> TOTPDevice:
    """The app being set up: kept until confirmed, so the QR code stays the same on reload."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name=APP_DEVICE_NAME, confirmed=False)


def confirm(device: TOTPDevice, code: str) -> bool:
    """The first code from the app proves it holds the secret: the device counts from now."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().get(pk=device.pk)
        if not _TOTP_CODE.fullmatch(code) or not device.verify_token(code):
            return False
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return True


def new_recovery_codes(user) -> list[str]:
    """Replace the person's recovery codes with new ones (the old ones stop working)."""
    with transaction.atomic():
        device, _created = StaticDevice.objects.get_or_create(
            user=user, name=RECOVERY_DEVICE_NAME, defaults={"confirmed": True}
        )
        device.token_set.all().delete()
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
    return codes


def remaining_recovery_codes(user) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def normalise(code: str) -> str:
    """People type codes with spaces or in capitals; the devices store neither."""
    return re.sub(r"[\s-]", "", code).lower()


def verify(user, code: str) -> Device | None:
    """The device that accepts the code: six digits go to the app, anything else is tried
    as a recovery code (which is then used up). django-otp throttles both after a failure
    (1 s, 2 s, 4 s, …), which is what stops guessing here."""
    code = normalise(code)
    model = TOTPDevice if _TOTP_CODE.fullmatch(code) else StaticDevice
    with transaction.atomic():
        device = model.objects.select_for_update().filter(user=user, confirmed=True).first()
        if device is not None and device.verify_token(code):
            return device
    return None


def throttled(user, code: str) -> bool:
    """Whether the device the code was meant for is waiting after failures."""
    model = TOTPDevice if _TOTP_CODE.fullmatch(normalise(code)) else StaticDevice
    device = model.objects.filter(user=user, confirmed=True).first()
    return device is not None and not device.verify_is_allowed()[0]


def remove(user) -> None:
    """Turn the second factor off: the app, the recovery codes and any half-set-up app."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()


def qr_svg(device: TOTPDevice) -> str:
    """The app's setup address as an inline SVG QR code: no image file, no script."""
    return segno.make(device.config_url, error="m").svg_inline(
        scale=4, border=2, dark="#000", light="#fff"
    )


def secret_text(device: TOTPDevice) -> str:
    """The secret in base32, as apps ask for it when typed in, in groups of four."""
    secret = base64.b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
