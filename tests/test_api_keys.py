"""A global admin issues and rotates an organization's API key; it is shown once."""

from __future__ import annotations

import io

from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse

from audit.models import AdminAction
from organizations.models import ApiKey


def test_a_new_key_is_shown_once_and_works(org, global_admin) -> None:
    client = Client()
    client.force_login(global_admin)
    url = reverse("api_keys", args=[org.slug])

    response = client.post(url)

    raw_key = response.context["new_key"]
    assert raw_key.startswith("vlk_") and raw_key in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    key = ApiKey.authenticate(raw_key)
    assert key is not None and key.organization == org
    # Only a hash is stored, and the page never shows the key again.
    assert raw_key not in str(list(ApiKey.objects.values()))
    assert raw_key not in client.get(url).content.decode()


def test_rotating_stops_the_previous_key_at_once(org, global_admin) -> None:
    _first, old_key = ApiKey.issue(org)
    client = Client()
    client.force_login(global_admin)

    new_key = client.post(reverse("api_keys", args=[org.slug])).context["new_key"]

    assert ApiKey.authenticate(old_key) is None
    assert ApiKey.authenticate(new_key) is not None
    assert ApiKey.objects.filter(organization=org, revoked_at__isnull=True).count() == 1


def test_issuing_a_key_is_recorded_with_who_and_when_but_not_the_key(org, global_admin) -> None:
    client = Client()
    client.force_login(global_admin)
    raw_key = client.post(reverse("api_keys", args=[org.slug])).context["new_key"]

    action = AdminAction.objects.get()
    assert (action.organization, action.actor, action.kind) == (org, global_admin, "api_key_issued")
    assert action.actor_username == "global-admin"
    assert raw_key not in str(action.detail)


def test_the_command_prints_only_the_key(org) -> None:
    out = io.StringIO()
    call_command("issue_api_key", org.slug, stdout=out)
    raw_key = out.getvalue().strip()
    key = ApiKey.authenticate(raw_key)
    assert key is not None and key.organization == org
    assert AdminAction.objects.get().detail["via"] == "command line"


def test_the_command_names_the_known_organizations_when_one_is_wrong(org) -> None:
    try:
        call_command("issue_api_key", "nope")
    except CommandError as error:
        assert "blindeforbundet" in str(error)
    else:
        raise AssertionError("expected a CommandError")
