"""Issue 11, item 3: the administrative trail shows field names, choices and booleans in
the reader's language; the stored detail keeps its codes."""

from __future__ import annotations

from django.conf import settings

from audit.models import AdminAction
from tests.test_audit_trail import client_for, trail_url

SCHEDULE_CHANGE = {
    "changes": {
        "schedule": {"from": "manual", "to": "daily"},
        "sync_after_approval": {"from": None, "to": True},
        "include_honorariums": {"from": True, "to": False},
    },
    "cron": "0 2 * * *",
}


def record_changes(org, actor) -> None:
    AdminAction.record(actor, org, AdminAction.Kind.SCHEDULE_CHANGED, **SCHEDULE_CHANGE)
    AdminAction.record(
        actor,
        org,
        AdminAction.Kind.CREDENTIALS_CHANGED,
        connector="xledger",
        fields=["api_token"],
    )


def test_s8_trail_details_in_words_for_an_english_reader(org, org_admin) -> None:
    record_changes(org, org_admin)
    page = client_for(org_admin).get(trail_url(org)).content.decode()
    assert "Sync schedule: Manual only → Daily" in page
    assert "Sync after each approval: — → Yes" in page
    assert "Honorariums: Yes → No" in page
    assert "<dd>API token</dd>" in page and "<dd>Xledger</dd>" in page
    for raw in ("schedule: manual", "sync_after_approval", "→ True", "api_token", "<dd>xledger"):
        assert raw not in page
    stored = AdminAction.objects.get(kind=AdminAction.Kind.SCHEDULE_CHANGED).detail
    assert stored == SCHEDULE_CHANGE  # the stored JSON keeps its codes


def test_s8_trail_details_in_words_for_a_norwegian_reader(org, org_admin) -> None:
    record_changes(org, org_admin)
    client = client_for(org_admin)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "nb"
    page = client.get(trail_url(org)).content.decode()
    assert "Synkroniseringsplan: Bare manuelt → Daglig" in page
    assert "Synkroniser etter hver godkjenning: — → Ja" in page
    assert "<dd>API-token</dd>" in page
