"""A run's outcome is stored as codes and numbers and worded in the reader's language when
shown (issue 11 item 5, issue 14 item 3; S3.3, S3.6, S9.5).

The engine runs against the ERP sandbox; the pages are read in English and in Norwegian
(Accept-Language, as a browser sends it). The ERP's own words stay verbatim: evidence.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.html import escape

from accounting_sync import outcomes
from accounting_sync.models import ErrorClass, SyncEvent, SyncLog, SyncRun
from accounting_sync.orchestrator import recover_stale_runs
from accounting_sync.outcomes import RunDetail, SkipReason
from alerts.models import Alert
from alerts.rules import alert_for_event
from tests.factories import configure, make_records, sync

pytestmark = pytest.mark.usefixtures("trust_erp_sandbox")


def page(user, url: str, language: str) -> str:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def finished(org, **fields) -> SyncRun:
    values = {"connector": "xledger", "trigger": "manual", "finished_at": timezone.now()}
    return SyncRun.objects.create(organization=org, **{**values, **fields})


def test_s9_5_a_run_that_skips_records_stores_codes_and_the_history_words_them_per_reader(
    org, org_admin, erp_sandbox
):
    configure(org, erp_sandbox)
    make_records(org, 3)
    make_records(org, 2, category="parkering")

    run = sync(org)

    # What happened, as codes and numbers: no sentence in any language in the row.
    assert run.message == "" and run.detail_code == ""
    assert (run.sent, run.skipped) == (3, 2)
    assert run.skip_reasons == [{"code": "no_mapping", "category": "parkering", "count": 2}]

    url = reverse("sync_history", args=[org.slug])
    norwegian = page(org_admin, url, "nb")
    assert "<td>3 sendt, 2 hoppet over.</td>" in norwegian
    assert "<li>2 venter på kontering: parkering</li>" in norwegian
    for english in ("3 sent", "2 skipped", "waiting for a mapping", "No mapping for category"):
        assert english not in norwegian
    english_page = page(org_admin, url, "en")
    assert "<td>3 sent, 2 skipped.</td>" in english_page
    assert "<li>2 waiting for a mapping: parkering</li>" in english_page


def test_s3_3_refused_credentials_are_worded_per_reader_around_the_erps_own_words(
    org, org_admin, erp_sandbox
):
    configure(org, erp_sandbox)
    make_records(org, 2)
    erp_sandbox.set_faults(expired_credentials=True)

    run = sync(org)

    assert run.error_class == ErrorClass.AUTHENTICATION
    assert run.detail_code == RunDetail.CREDENTIALS_REFUSED and run.message == ""
    erp_words = run.detail_params["error"]
    assert erp_words  # the ERP's (connector's) explanation, kept as it came

    home = reverse("organization_home", args=[org.slug])
    norwegian = page(org_admin, home, "nb")
    assert "Synkroniseringen feilet: 0 sendt, 2 feilet." in norwegian
    assert f"Regnskapssystemet avviste påloggingsopplysningene: {escape(erp_words)}" in norwegian
    assert "refused the credentials" not in norwegian
    english = page(org_admin, home, "en")
    assert (
        "Sync failed: 0 sent, 2 failed. The accounting system refused the credentials: "
        f"{escape(erp_words)}"
    ) in english


def test_an_abandoned_run_stores_its_code_and_is_worded_per_reader(org) -> None:
    run = SyncRun.objects.create(organization=org, connector="xledger", trigger="schedule")
    SyncRun.objects.filter(pk=run.pk).update(
        worker="dead@host", heartbeat_at=timezone.now() - timedelta(hours=1)
    )

    [closed] = recover_stale_runs()

    assert closed.error_class == ErrorClass.ABANDONED == "abandoned"
    assert closed.detail_code == RunDetail.ABANDONED and closed.message == ""
    assert closed.outcome_text().startswith(
        "The sync stopped because its worker stopped answering."
    )
    with translation.override("nb"):
        assert closed.outcome_text().startswith(
            "Synkroniseringen stoppet fordi bakgrunnsprosessen sluttet å svare."
        )


@pytest.mark.parametrize("code", list(RunDetail))
def test_every_run_detail_has_words_in_both_languages(org, code) -> None:
    run = finished(org, status="failed", detail_code=code, detail_params={"left": 3, "error": "X"})
    with translation.override("en"):
        english = run.outcome_text()
    with translation.override("nb"):
        norwegian = run.outcome_text()
    assert english and norwegian and english != norwegian
    assert code not in english and code not in norwegian


@pytest.mark.parametrize("code", list(SkipReason))
def test_every_skip_reason_has_words_in_both_languages(org, code) -> None:
    run = finished(org, skipped=4, skip_reasons=[{"code": code, "count": 4, "category": "taxi"}])
    with translation.override("en"):
        [english] = run.skip_texts()
    with translation.override("nb"):
        [norwegian] = run.skip_texts()
    assert english.startswith("4 waiting for a ") and norwegian.startswith("4 venter på ")


def test_s6_5_the_failed_records_page_says_why_a_retry_did_not_run_in_the_readers_language(
    org,
) -> None:
    run = finished(org, trigger="retry", status="failed", detail_code=RunDetail.CONNECTOR_DISABLED)
    assert outcomes.retry_announcement(run) == (
        "The retry did not run: The connector is disabled; records stay pending until it is "
        "enabled."
    )
    with translation.override("nb"):
        assert outcomes.retry_announcement(run) == (
            "Det nye forsøket ble ikke kjørt: Koblingen er slått av; bilagene venter til den "
            "slås på."
        )


def test_s9_4_a_scheduled_sync_alert_without_erp_words_words_the_run_for_its_reader(org):
    run = finished(
        org,
        trigger="schedule",
        status="failed",
        error_class=ErrorClass.NETWORK,
        total=2,
        failed=2,
    )
    event = SyncEvent.objects.create(
        organization=org, run=run, kind=SyncEvent.Kind.SCHEDULED_RUN_FAILED, message="-"
    )
    assert not SyncLog.objects.filter(run=run, status="failed").exists()  # all uncertain

    alert = alert_for_event(event)

    assert alert is not None and alert.details["error"] == ""  # no English stored
    assert alert.message.endswith("also after 3 retries: 0 sent, 2 failed.")
    with translation.override("nb"):
        assert Alert.objects.get(pk=alert.pk).message.endswith("0 sendt, 2 feilet.")


def test_a_run_stored_before_the_codes_shows_its_message_and_reasons_as_stored(
    org, org_admin
) -> None:
    finished(
        org,
        status="partial",
        sent=3,
        failed=1,
        skipped=2,
        message="3 sent, 1 failed, 2 skipped.",
        skip_reasons={"No mapping for category 'toll'.": 2},
    )
    history = page(org_admin, reverse("sync_history", args=[org.slug]), "en")
    assert "<td>3 sent, 1 failed, 2 skipped.</td>" in history
    assert "<li>No mapping for category &#x27;toll&#x27;.: 2</li>" in history
