"""The tenants: organizations, who belongs to them in which role, and their API keys.

These models lived in `integrations` until the apps were layered (docs/architecture.md);
their tables kept the old names, so the move changed no data.
"""

from __future__ import annotations

import hashlib
import secrets
import zoneinfo
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy


def validate_time_zone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(_("%(zone)r is not a known time zone") % {"zone": value})


class Organization(models.Model):
    """A member organization: the tenant. Everything it owns hangs off this row."""

    name = models.CharField(max_length=200, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    time_zone = models.CharField(
        max_length=64, default="Europe/Oslo", validators=[validate_time_zone]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Goes up whenever something a live page shows changes (records arrive, a run starts,
    # progresses or ends, the integration changes): a poll compares it and stops there.
    live_version = models.PositiveBigIntegerField(default=0)
    # Set by a global admin: the organization's admins (not its auditors) must use a second
    # factor (accounts/two_factor.py). Global admins always must.
    require_two_factor = models.BooleanField(
        default=False,
        verbose_name=gettext_lazy("require two-factor authentication of its admins"),
    )

    class Meta:
        db_table = "integrations_organization"  # the table kept its name when the model moved
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def touch(cls, organization_id: int) -> None:
        """Tell live pages that something they show has changed."""
        cls.objects.filter(pk=organization_id).update(live_version=F("live_version") + 1)

    def active_api_key(self) -> ApiKey | None:
        return self.api_keys.filter(revoked_at__isnull=True).first()


class Membership(models.Model):
    """A user's role in one organization. Global admins need none: see access.py."""

    class Role(models.TextChoices):
        ADMIN = "admin", gettext_lazy("Admin")
        AUDITOR = "auditor", gettext_lazy("Auditor")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices)

    class Meta:
        db_table = "integrations_membership"
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="one_role_per_org"),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.organization} · {self.role}"

    @property
    def can_write(self) -> bool:
        return self.role == self.Role.ADMIN


class ApiKey(models.Model):
    """The key the volunteer app uses to send an organization's approved records.

    Only a SHA-256 of the key is kept: the key is 256 random bits, so a slow
    password hash would add nothing but latency to every request. The short
    prefix is stored in clear so a key can be found without scanning hashes.
    """

    PREFIX = "vlk"

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "integrations_apikey"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization"],
                condition=models.Q(revoked_at__isnull=True),
                name="one_active_api_key_per_org",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.PREFIX}_{self.prefix}_…"

    @staticmethod
    def _hash(raw_key: str) -> str:
        return hashlib.sha256(raw_key.encode()).hexdigest()

    @classmethod
    def issue(cls, organization: Organization, created_by=None) -> tuple[ApiKey, str]:
        """Revoke the organization's current key and make a new one.

        Returns the new row and the key itself, which is never stored and so can
        be shown exactly once.
        """
        prefix = secrets.token_hex(4)
        raw_key = f"{cls.PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
        with transaction.atomic():
            # Lock the organization row so two rotations at once cannot both
            # leave an active key (the partial unique index would refuse one).
            Organization.objects.select_for_update().get(pk=organization.pk)
            cls.objects.filter(organization=organization, revoked_at__isnull=True).update(
                revoked_at=timezone.now()
            )
            key = cls.objects.create(
                organization=organization,
                prefix=prefix,
                key_hash=cls._hash(raw_key),
                created_by=created_by,
            )
        return key, raw_key

    @classmethod
    def adopt(cls, organization: Organization, raw_key: str) -> ApiKey:
        """Keep a key chosen elsewhere, as the active key of an organization that has none
        (the demo's published key, so that its feed can post without a secret)."""
        parts = raw_key.split("_", 2)
        if len(parts) != 3 or parts[0] != cls.PREFIX:
            raise ValueError(f"an API key looks like {cls.PREFIX}_<prefix>_<secret>")
        return cls.objects.create(
            organization=organization, prefix=parts[1], key_hash=cls._hash(raw_key)
        )

    @classmethod
    def authenticate(cls, raw_key: str) -> ApiKey | None:
        parts = raw_key.split("_", 2)
        if len(parts) != 3 or parts[0] != cls.PREFIX:
            return None
        key = (
            cls.objects.select_related("organization")
            .filter(prefix=parts[1], revoked_at__isnull=True)
            .first()
        )
        if key is None or not secrets.compare_digest(key.key_hash, cls._hash(raw_key)):
            return None
        key.mark_used()
        return key

    def mark_used(self) -> None:
        # At most one write a minute per key: the volunteer app may call often.
        now = timezone.now()
        if self.last_used_at is None or now - self.last_used_at > timedelta(minutes=1):
            ApiKey.objects.filter(pk=self.pk).update(last_used_at=now)
            self.last_used_at = now
