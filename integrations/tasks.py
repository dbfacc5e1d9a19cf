from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_noop

from integrations.clients.base import ConnectorError
from integrations.crypto import CredentialsUnreadable
from integrations.models import ConnectionTest, Integration

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
        _finish(test, ConnectionTest.Status.FAILED, error.message)
        return
    except CredentialsUnreadable as error:
        _finish(test, ConnectionTest.Status.FAILED, str(error))
        return
    except Exception:
        # Not a classified ERP failure: a bug. Say so without details that could
        # carry a secret; the traceback goes to the worker's log.
        logger.exception("connection test %s failed unexpectedly", test_id)
        # Stored in English; the page shows it in the reader's language ({% translate %}).
        _finish(
            test,
            ConnectionTest.Status.FAILED,
            gettext_noop(
                "The test stopped on an unexpected error. The technical details are in the "
                "worker's log."
            ),
        )
        return
    with transaction.atomic():
        integration = Integration.objects.select_for_update().get(pk=test.integration_id)
        integration.record_connection_test(report)
        integration.save()
        test.account_count = len(report.accounts)
        test.cost_center_count = len(report.cost_centers)
        # The page words the outcome from the counts in the reader's language; the message
        # keeps only what the connector found out about the ERP (company, object kind).
        _finish(test, ConnectionTest.Status.SUCCEEDED, report.detail)


def _finish(test: ConnectionTest, status: str, message: str) -> None:
    test.status = status
    test.message = message
    test.finished_at = timezone.now()
    test.save(
        update_fields=["status", "message", "account_count", "cost_center_count", "finished_at"]
    )
