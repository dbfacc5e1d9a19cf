"""Build an integration's connector from what is saved (and decrypted) for it."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from integrations import pacing
from integrations.clients.base import Connector
from integrations.clients.business_central import BusinessCentralConfig, BusinessCentralConnector
from integrations.clients.limits import BUSINESS_CENTRAL_RATE, XLEDGER_RATE
from integrations.clients.xledger import XledgerConfig, XledgerConnector


def ca_bundle() -> str | bool:
    """The CA bundle to trust: the configured file if it exists, else the public CAs."""
    path = settings.ERP_CA_BUNDLE
    return path if path and Path(path).is_file() else True


def allowed_hosts() -> tuple[str, ...]:
    """ERP_ALLOWED_HOSTS for the connectors' gate, which checks it on every request."""
    return tuple(settings.ERP_ALLOWED_HOSTS)


def build_connector(integration) -> Connector:
    # Empty when the address changed since the secrets were typed (Integration.credentials).
    secrets = integration.credentials()
    if integration.connector == integration.Connector.XLEDGER:
        return XledgerConnector(
            XledgerConfig(
                graphql_url=integration.base_url,
                auth=integration.xledger_auth,
                api_token=secrets.get("api_token", ""),
                token_url=integration.token_url,
                client_id=integration.client_id,
                client_secret=secrets.get("client_secret", ""),
                scope=integration.oauth_scope,
                cost_center_object=integration.cost_center_object,
                cost_center_kind_db_id=integration.cost_center_kind_db_id,
                claimant_subledger=integration.xledger_claimant_subledger,
                ca_bundle=ca_bundle(),
                allowed_hosts=allowed_hosts(),
                # One window per credential: the token, or the OAuth2 client at its token URL.
                pacer=pacing.pacer(
                    "xledger:"
                    + (
                        secrets.get("api_token", "")
                        or integration.token_url + integration.client_id
                    ),
                    XLEDGER_RATE,
                ),
            )
        )
    return BusinessCentralConnector(
        BusinessCentralConfig(
            api_base_url=integration.base_url,
            authority_host=integration.authority_host,
            tenant_id=integration.tenant_id,
            environment=integration.environment,
            company_id=integration.company_id,
            client_id=integration.client_id,
            client_secret=secrets.get("client_secret", ""),
            journal_code=integration.journal_code,
            cost_center_dimension=integration.cost_center_dimension,
            ca_bundle=ca_bundle(),
            allowed_hosts=allowed_hosts(),
            # Microsoft counts per service principal: the app registration in its tenant.
            pacer=pacing.pacer(
                f"business_central:{integration.tenant_id}:{integration.client_id}",
                BUSINESS_CENTRAL_RATE,
            ),
        )
    )
