"""Issue 5 item 6: every page in English and Norwegian Bokmål; the person picks, the browser's
language is the default; dates and amounts in the reader's locale."""

from __future__ import annotations

import json
import zoneinfo
from datetime import datetime, time
from decimal import Decimal

import pytest
import time_machine
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import translation

from accounting_sync.models import FinancialRecord, SyncRun
from core.templatetags.formatting import money
from integrations.models import Integration

OSLO = zoneinfo.ZoneInfo("Europe/Oslo")


@pytest.fixture(autouse=True)
def _english_afterwards():
    """A request in Norwegian leaves Norwegian active in the test's thread (LocaleMiddleware
    activates, nothing deactivates); later tests that call gettext directly expect English."""
    with translation.override(settings.LANGUAGE_CODE):
        yield


def client_for(user=None, **headers) -> Client:
    client = Client(**headers)
    if user is not None:
        client.force_login(user)
    return client


def history_page(client: Client, org) -> str:
    response = client.get(reverse("sync_history", args=[org.slug]))
    assert response.status_code == 200
    return response.content.decode()


# --- which language: the browser's, until the person picks one ------------------------------------


def test_a_norwegian_browser_gets_norwegian_pages(org, org_admin) -> None:
    page = history_page(client_for(org_admin, HTTP_ACCEPT_LANGUAGE="nb-NO,nb;q=0.9,en;q=0.5"), org)
    assert '<html lang="nb">' in page
    assert "<h1>Synkroniseringslogg</h1>" in page
    assert "Ingen synkroniseringer har kjørt ennå." in page


@pytest.mark.parametrize("accept", [None, "en-GB,en;q=0.9", "de-DE,de;q=0.9"])
def test_english_is_the_default(org, org_admin, accept) -> None:
    headers = {"HTTP_ACCEPT_LANGUAGE": accept} if accept else {}
    page = history_page(client_for(org_admin, **headers), org)
    assert '<html lang="en">' in page
    assert "<h1>Sync history</h1>" in page


def test_the_login_page_is_in_the_browsers_language_and_offers_the_picker(db) -> None:
    page = client_for(HTTP_ACCEPT_LANGUAGE="nb").get(reverse("login")).content.decode()
    assert "<h1>Logg inn</h1>" in page
    assert f'action="{reverse("set_language")}"' in page
    # Hidden from sight (the header keeps one row), still read out by a screen reader.
    assert '<label for="language-select" class="visually-hidden">Språk</label>' in page
    # Each language is named in itself, so a reader finds their own in either page.
    assert '<option value="en" lang="en" >English</option>' in page
    assert '<option value="nb" lang="nb" selected>Norsk (bokmål)</option>' in page


def test_the_picker_switches_language_and_the_choice_sticks(org, org_admin) -> None:
    client = client_for(org_admin, HTTP_ACCEPT_LANGUAGE="en")
    here = reverse("sync_history", args=[org.slug])
    response = client.post(reverse("set_language"), {"language": "nb", "next": here})
    assert response.status_code == 302 and response["Location"] == here
    cookie = client.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "nb"
    assert cookie["httponly"] and cookie["samesite"] == "Lax"  # no script reads or sends it
    # The cookie outranks the browser, which still asks for English, page after page.
    for _ in range(2):
        page = history_page(client, org)
        assert '<html lang="nb">' in page and "<h1>Synkroniseringslogg</h1>" in page

    client.post(reverse("set_language"), {"language": "en", "next": here})
    assert "<h1>Sync history</h1>" in history_page(client, org)


def test_a_person_may_pick_a_language_before_logging_in(db) -> None:
    client = client_for()
    login = reverse("login")
    response = client.post(reverse("set_language"), {"language": "nb", "next": login})
    assert response["Location"] == login
    assert "<h1>Logg inn</h1>" in client.get(login).content.decode()


def test_the_picker_refuses_a_language_the_site_does_not_offer(org, org_admin) -> None:
    client = client_for(org_admin)
    client.post(reverse("set_language"), {"language": "de", "next": "/"})
    page = history_page(client, org)
    assert '<html lang="en">' in page and "<h1>Sync history</h1>" in page


def test_the_picker_sends_nobody_to_another_site(org, org_admin) -> None:
    client = client_for(org_admin)
    response = client.post(
        reverse("set_language"), {"language": "nb", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/"


# --- what is said, in the reader's language ---------------------------------------------------


def test_messages_labels_and_choices_are_translated(org, org_admin) -> None:
    client = client_for(org_admin, HTTP_ACCEPT_LANGUAGE="nb")
    response = client.post(
        reverse("integration_schedule", args=[org.slug]),
        {"schedule": "daily", "automatic_retries": 5, "first_retry_delay_seconds": 60},
    )
    page = response.content.decode()
    assert "Velg tidspunkt." in page  # a form error
    assert "> Bare manuelt</label>" in page and "> Egendefinert (cron)</label>" in page
    assert "Ta med minst én type bilag, ellers blir ingenting synkronisert." in page


def test_an_auditors_refusal_is_in_their_language(org, auditor) -> None:
    client = client_for(auditor, HTTP_ACCEPT_LANGUAGE="nb")
    response = client.post(reverse("integration_toggle", args=[org.slug]), {"enabled": "true"})
    assert response.status_code == 403
    assert "Revisorer har bare lesetilgang." in response.content.decode()


def test_a_cron_error_is_explained_in_norwegian(org, org_admin) -> None:
    client = client_for(org_admin, HTTP_ACCEPT_LANGUAGE="nb")
    response = client.get(
        reverse("integration_schedule_preview", args=[org.slug]),
        {"schedule": "custom", "schedule_cron": "0 25 * * *"},
    )
    assert "Feltet time «25» er utenfor gyldig område: bruk 0 til 23." in response.content.decode()


def test_the_schedule_is_described_and_dated_in_the_readers_language(org, org_admin) -> None:
    integration = Integration.objects.get(organization=org)
    integration.schedule, integration.schedule_time = "weekly", time(2, 0)
    integration.schedule_weekday = 7
    integration.save()
    url = reverse("integration_schedule", args=[org.slug])
    with time_machine.travel(datetime(2025, 6, 4, 12, 0, tzinfo=OSLO), tick=False):
        norwegian = client_for(org_admin, HTTP_ACCEPT_LANGUAGE="nb").get(url).content.decode()
        english = client_for(org_admin).get(url).content.decode()
    assert "Hver søndag kl. 02:00." in norwegian and "Every Sunday" not in norwegian
    assert "søndag 8. juni 2025, kl. 02:00 CEST" in norwegian
    assert "Every Sunday at 02:00." in english and "Hver søndag" not in english
    assert "Sunday 8 June 2025, 02:00 CEST" in english


# --- dates and amounts in the reader's locale --------------------------------------------------


def test_dates_read_as_each_locale_writes_them(org, org_admin) -> None:
    run = SyncRun.objects.create(organization=org, connector="xledger", trigger="manual")
    started = datetime(2026, 11, 21, 14, 5, tzinfo=OSLO)
    SyncRun.objects.filter(pk=run.pk).update(started_at=started, status="succeeded")
    norwegian = history_page(client_for(org_admin, HTTP_ACCEPT_LANGUAGE="nb"), org)
    english = history_page(client_for(org_admin), org)
    assert ">21.11.2026 14:05</time>" in norwegian
    assert ">2026-11-21 14:05</time>" in english
    # A machine reads the same moment in both.
    assert 'datetime="2026-11-21T13:05:00+00:00"' in norwegian


def test_amounts_read_as_each_locale_writes_them(org, org_admin) -> None:
    FinancialRecord.objects.create(
        organization=org,
        source_id="km-1",
        kind="reimbursement",
        category="travel",
        amount=Decimal("12345.50"),
        expense_date="2026-11-20",
        approved_at=datetime(2026, 11, 21, 9, 30, tzinfo=OSLO),
        claimant_reference="V-1",
        claimant_name="Kari Nordmann",
    )
    url = reverse("organization_home", args=[org.slug])
    norwegian = client_for(org_admin, HTTP_ACCEPT_LANGUAGE="nb").get(url).content.decode()
    english = client_for(org_admin).get(url).content.decode()
    assert "12\xa0345,50 NOK" in norwegian and "21.11.2026 09:30" in norwegian
    assert "12,345.50 NOK" in english and "2026-11-21 09:30" in english


@pytest.mark.parametrize(
    ("language", "expected"),
    [("nb", "1\xa0234\xa0567,80 NOK"), ("en", "1,234,567.80 NOK")],
)
def test_the_money_filter_groups_and_marks_decimals_per_locale(language, expected) -> None:
    with translation.override(language):
        assert money(Decimal("1234567.8"), "NOK") == expected


# --- what stays English ---------------------------------------------------------------------------


def test_the_apis_machine_readable_errors_stay_english_whatever_the_client_asks(api_key) -> None:
    # The volunteer app reads these; a program should not see them change with its locale.
    body = json.dumps({"source_id": "claim-1", "amount": "abc"})
    answers = [
        Client().post(
            reverse("api_records"),
            data=body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {api_key}",
            HTTP_ACCEPT_LANGUAGE=language,
        )
        for language in ("en", "nb")
    ]
    assert [answer.status_code for answer in answers] == [400, 400]
    assert answers[0].json() == answers[1].json()
    assert answers[1].json()["errors"]["kind"] == ["is required"]
