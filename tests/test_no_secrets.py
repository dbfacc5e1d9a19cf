"""S1.4 and the definition of done: credentials stay on the server, encrypted, and unspoken.

A secret must not appear in any page, log record, stored result or error message,
and the column that holds it must be ciphertext. This walks the whole path with the
real connectors against the ERP sandbox, in success and in every kind of failure.
"""

from __future__ import annotations

import logging

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from audit.models import AdminAction
from integrations.models import ConnectionTest, Integration
from integrations.tasks import run_connection_test

XLEDGER_TOKEN = "xl-demo-blindeforbundet-token"
BC_SECRET = "hlf-demo-secret"
WRONG = "wrong-secret-that-must-not-leak-4d3c2b"


@pytest.fixture(autouse=True)
def _trust_the_sandbox(erp_sandbox, settings) -> None:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)


def configure(client: Client, org, erp_sandbox, connector: str, secret: str) -> Integration:
    if connector == "xledger":
        form = {
            "connector": "xledger",
            "base_url": f"{erp_sandbox.url}/graphql",
            "xledger_auth": "token",
            "api_token": secret,
            "cost_center_object": "1",
            "cost_center_kind_db_id": "101",
        }
    else:
        form = {
            "connector": "business_central",
            "base_url": erp_sandbox.url,
            "authority_host": erp_sandbox.url,
            "tenant_id": "3f2b9c4e-5d6a-4b7c-8e9f-0a1b2c3d4e5f",
            "environment": "production",
            "company_id": "8a4c2e6f-1b3d-4a5c-9e7f-6d8b0a2c4e6f",
            "client_id": "5c1e7a92-0d3b-4f6e-9a8c-2b4d6f8a0c1e",
            "client_secret": secret,
            "journal_code": "UTLEGG",
            "cost_center_dimension": "AVDELING",
        }
    response = client.post(reverse("integration_settings", args=[org.slug]), form)
    assert response.status_code == 302, response.content[:500]
    return Integration.objects.get(organization=org)


def run_test(integration: Integration) -> ConnectionTest:
    test = ConnectionTest.objects.create(integration=integration)
    run_connection_test(test.pk)  # the task's own code, in this process
    test.refresh_from_db()
    return test


def everything_shown(org, users) -> str:
    pages = []
    urls = [
        reverse(name, args=[org.slug])
        for name in (
            "integration_settings",
            "integration_connection",
            "integration_mappings",
            "organization_home",
        )
    ]
    urls.append(reverse("admin:integrations_integration_change", args=[org.integration.pk]))
    for user in users:
        client = Client()
        client.force_login(user)
        pages += [client.get(url).content.decode() for url in urls]
    return "\n".join(pages)


def stored_text() -> str:
    tests = list(ConnectionTest.objects.values_list("message", flat=True))
    actions = [str(detail) for detail in AdminAction.objects.values_list("detail", flat=True)]
    return "\n".join(tests + actions)


@pytest.mark.parametrize(
    ("connector", "good_secret"),
    [("xledger", XLEDGER_TOKEN), ("business_central", BC_SECRET)],
)
def test_no_secret_leaves_the_server_in_success_or_failure(
    connector, good_secret, org, org_admin, auditor, global_admin, erp_sandbox, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = Client()
    admin.force_login(org_admin)

    integration = configure(admin, org, erp_sandbox, connector, good_secret)
    assert run_test(integration).status == "succeeded"

    configure(admin, org, erp_sandbox, connector, WRONG)
    failed = run_test(integration)
    assert failed.status == "failed" and failed.failure_text

    configure(admin, org, erp_sandbox, connector, good_secret)
    erp_sandbox.set_faults(expired_credentials=True)
    expired = run_test(integration)
    assert expired.status == "failed" and expired.failure_text

    logged = "\n".join(
        f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
        for record in caplog.records
    )
    shown = everything_shown(org, [org_admin, auditor, global_admin])
    for secret in (good_secret, WRONG):
        assert secret not in logged, "a secret was logged"
        assert secret not in shown, "a secret was shown on a page"
        assert secret not in stored_text(), "a secret was stored in clear"


def test_the_credentials_column_holds_ciphertext(org, org_admin, erp_sandbox) -> None:
    admin = Client()
    admin.force_login(org_admin)
    integration = configure(admin, org, erp_sandbox, "xledger", XLEDGER_TOKEN)

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT credentials_ciphertext FROM integrations_integration WHERE id = %s",
            [integration.pk],
        )
        (raw,) = cursor.fetchone()
    assert XLEDGER_TOKEN not in raw
    assert raw.startswith("gAAAAA")  # Fernet's version byte, base64
    assert integration.credentials() == {"api_token": XLEDGER_TOKEN}
