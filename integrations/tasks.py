from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from integrations.clients.base import ConnectorError
from integrations.crypto import CredentialsUnreadable
from integrations.models import ConnectionTest, Integration
from integrations.notes import Note, NoteCode, note

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def run_connection_test(test_id: int) -> None:
    """Test an integration's connection and keep what the ERP listed for the mappings."""
    # Claim the test with a conditional update, so a duplicated task does nothing.
    if not ConnectionTest.objects.filter(pk=test_id, status=ConnectionTest.Status.QUEUED).update(
        status=ConnectionTest.Status.RUNNING
    ):
        return
    test = ConnectionTest.objects.select_related("integration").get(pk=test_id)
    try:
        report = test.integration.build_connector().test_connection()
    except ConnectorError as error:
        _finish(test, ConnectionTest.Status.FAILED, [error.note], error.erp_words)
        return
    except CredentialsUnreadable:
        _finish(test, ConnectionTest.Status.FAILED, [note(NoteCode.CREDENTIALS_UNREADABLE)])
        return
    except Exception:
        # Not a classified ERP failure: a bug. Say so without details that could
        # carry a secret; the traceback goes to the worker's log.
        logger.exception("connection test %s failed unexpectedly", test_id)
        _finish(test, ConnectionTest.Status.FAILED, [note(NoteCode.TEST_UNEXPECTED_ERROR)])
        return
    with transaction.atomic():
        integration = Integration.objects.select_for_update().get(pk=test.integration_id)
        integration.record_connection_test(report)
        integration.save()
        test.account_count = len(report.accounts)
        test.cost_center_count = len(report.cost_centers)
        # The page words the outcome from the counts in the reader's language; the notes
        # keep what the connector found out about the ERP (company, object kind).
        _finish(test, ConnectionTest.Status.SUCCEEDED, report.details)


def _finish(test: ConnectionTest, status: str, notes: list[Note], erp_words: str = "") -> None:
    test.status = status
    test.notes = [said.stored() for said in notes]
    test.message = erp_words
    test.finished_at = timezone.now()
    test.save(
        update_fields=[
            "status",
            "notes",
            "message",
            "account_count",
            "cost_center_count",
            "finished_at",
        ]
    )
