"""Issue 12 item 6: what Django's admin may still change is trailed. Memberships (who may
see and change an organization) are granted there, so each grant, change and removal
is recorded with who did it."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from audit.models import AdminAction
from organizations.models import Membership
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def membership_form(org, rows: list[dict], initial: int) -> dict:
    data = {
        "name": org.name,
        "slug": org.slug,
        "time_zone": org.time_zone,
        "live_version": str(org.live_version),
        "memberships-TOTAL_FORMS": str(len(rows)),
        "memberships-INITIAL_FORMS": str(initial),
        "memberships-MIN_NUM_FORMS": "0",
        "memberships-MAX_NUM_FORMS": "1000",
    }
    for index, row in enumerate(rows):
        for key, value in row.items():
            data[f"memberships-{index}-{key}"] = value
    return data


def test_issue12_item6_a_role_granted_changed_and_removed_in_the_admin_is_trailed(
    org, global_admin
) -> None:
    client = Client()
    client.force_login(global_admin)
    url = reverse("admin:organizations_organization_change", args=[org.pk])
    person = make_user("new-treasurer")

    client.post(url, membership_form(org, [{"user": person.pk, "role": "auditor"}], 0))
    membership = Membership.objects.get(user=person, organization=org)
    client.post(
        url,
        membership_form(
            org,
            [{"id": membership.pk, "organization": org.pk, "user": person.pk, "role": "admin"}],
            1,
        ),
    )
    client.post(
        url,
        membership_form(
            org,
            [
                {
                    "id": membership.pk,
                    "organization": org.pk,
                    "user": person.pk,
                    "role": "admin",
                    "DELETE": "on",
                }
            ],
            1,
        ),
    )

    trail = list(
        AdminAction.objects.filter(kind=AdminAction.Kind.MEMBERSHIP_CHANGED).order_by("id")
    )
    assert [(a.detail["change"], a.detail["role"], a.detail["previous_role"]) for a in trail] == [
        ("added", "auditor", ""),
        ("changed", "admin", "auditor"),
        ("removed", "", "admin"),
    ]
    assert all(a.actor == global_admin and a.organization == org for a in trail)
    assert not Membership.objects.filter(user=person).exists()
