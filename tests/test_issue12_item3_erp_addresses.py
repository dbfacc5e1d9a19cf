"""Issue 12 item 3: the ERP allow-list holds on every request, not only at save time.

The gate (integrations/clients/http.py, `_GuardedAdapter`) refuses any address off
the allow-list, plain http and a port the list does not name, and never follows a
redirect; MSAL's token endpoint must be the sign-in host's own; Business Central's
tenant, environment and company are taken only in their shapes; and a saved secret
is never sent to an address it was not typed for. HTTP is mocked with `responses`.
"""

from __future__ import annotations

import pytest
import responses

from audit.models import AdminAction
from integrations.clients import business_central as bc
from integrations.clients import http as gw_http
from integrations.clients import xledger as xl
from integrations.clients.base import ConnectorError, Outcome
from integrations.models import ConnectionTest, Integration
from integrations.tasks import run_connection_test
from tests.test_gateway_unit import (
    API,
    AUTHORITY_HOST,
    BC_SECRET,
    COMPANY,
    TENANT,
    XL_TOKEN,
    XL_URL,
    bc_config,
    openid_configuration,
    posting,
    xl_config,
    xl_oauth_config,
)
from tests.test_integration_settings import BC_FORM, XLEDGER_FORM, save

EVIL = "https://evil.example.test"
EVIL_PAGE = "<html>the page of evil.example.test: must never be kept</html>"


@pytest.fixture(autouse=True)
def _fresh_caches():
    xl._tokens.clear()
    bc._apps.clear()
    yield
    xl._tokens.clear()
    bc._apps.clear()


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def calls_to(mocked, origin: str) -> list:
    return [c for c in mocked.calls if c.request.url.startswith(origin)]


# --- the allow-list itself ------------------------------------------------------------------


def test_issue12_item3_the_allow_list_takes_port_443_unless_an_entry_names_another():
    allowed = gw_http.AllowList.parse(["www.xledger.net", "erp.example.test:8443", "localhost:*"])
    assert allowed.problem("https://www.xledger.net/graphql") is None
    assert allowed.problem("https://www.xledger.net:443/graphql") is None
    assert allowed.problem("https://erp.example.test:8443/x") is None
    assert allowed.problem("https://localhost:53117/graphql") is None  # the tests' sandbox
    assert allowed.problem("https://localhost:8443/graphql") is None  # the demo's sandbox
    for url in (
        "https://www.xledger.net:22/graphql",
        "https://www.xledger.net:0/graphql",
        "https://www.xledger.net:99999/graphql",
        "https://www.xledger.net:8443/graphql",
        "https://erp.example.test/x",  # 443 is not the port the entry names
        "https://localhost:22/",  # a wildcard never reaches a system service
    ):
        assert allowed.problem(url) is gw_http.Refusal.PORT, url
    assert allowed.problem("http://www.xledger.net/graphql") is gw_http.Refusal.SCHEME
    assert allowed.problem("https://evil.example.test/") is gw_http.Refusal.HOST
    assert allowed.problem("https://u:p@www.xledger.net/") is gw_http.Refusal.USERINFO


def test_issue12_item3_a_malformed_allow_list_entry_is_an_error():
    with pytest.raises(ValueError):
        gw_http.AllowList.parse(["www.xledger.net:http"])


# --- redirects: never followed, never kept ------------------------------------------------


def test_issue12_item3_a_redirect_is_refused_and_its_body_is_not_kept(mocked):
    mocked.post(XL_URL, status=302, headers={"Location": f"{EVIL}/graphql"}, body=EVIL_PAGE)
    mocked.post(f"{EVIL}/graphql", json={"data": {}})

    [result] = xl.XledgerConnector(xl_config()).post([posting()])

    assert result.outcome is Outcome.AUTHENTICATION  # stops the run; nothing resent blindly
    assert "The ERP address redirected to evil.example.test; check the address." in result.words
    assert result.response_body == ""
    assert EVIL_PAGE not in repr(result)
    assert calls_to(mocked, EVIL) == []


def test_issue12_item3_a_redirect_to_plain_http_is_refused(mocked):
    mocked.get(
        f"{AUTHORITY_HOST}/{TENANT}/v2.0/.well-known/openid-configuration",
        json=openid_configuration(),
    )
    mocked.post(
        f"{AUTHORITY_HOST}/{TENANT}/oauth2/v2.0/token",
        json={"token_type": "Bearer", "expires_in": 3599, "access_token": "t"},
    )
    http_target = API.replace("https://", "http://")
    mocked.get(
        f"{API}/companies({COMPANY})/journals",
        status=301,
        headers={"Location": f"{http_target}/companies({COMPANY})/journals"},
        body=EVIL_PAGE,
    )
    mocked.get(f"{http_target}/companies({COMPANY})/journals", json={"value": []})

    with pytest.raises(ConnectorError) as caught:
        bc.BusinessCentralConnector(bc_config()).list_journals()

    assert caught.value.outcome is Outcome.AUTHENTICATION
    assert "redirected to http://bc.example.test" in caught.value.message
    assert EVIL_PAGE not in caught.value.message
    assert calls_to(mocked, "http://") == []


def test_issue12_item3_the_oauth2_token_call_follows_no_redirect(mocked):
    mocked.post(
        xl_oauth_config().token_url, status=307, headers={"Location": f"{EVIL}/oauth2/token"}
    )
    mocked.post(f"{EVIL}/oauth2/token", json={"access_token": "x", "expires_in": 3600})

    with pytest.raises(ConnectorError) as caught:
        xl.XledgerConnector(xl_oauth_config()).list_accounts()

    assert "redirected to evil.example.test" in caught.value.message
    assert calls_to(mocked, EVIL) == []  # a 307 would have resent the secret there


def test_issue12_item3_a_connection_test_keeps_no_word_of_a_redirect_answer(mocked, org, settings):
    settings.ERP_CA_BUNDLE = ""
    integration = Integration.objects.get(organization=org)
    integration.base_url = "https://www.xledger.net/graphql"
    integration.set_credentials({"api_token": XL_TOKEN})
    integration.save()
    mocked.post(integration.base_url, status=302, headers={"Location": EVIL}, body=EVIL_PAGE)

    test = ConnectionTest.objects.create(integration=integration)
    run_connection_test(test.pk)
    test.refresh_from_db()

    assert test.status == ConnectionTest.Status.FAILED
    assert "redirected to evil.example.test; check the address" in test.failure_text
    assert "must never be kept" not in test.failure_text
    assert calls_to(mocked, EVIL) == []


# --- every request's address, not only the saved one ---------------------------------------


@pytest.mark.parametrize("port", ["22", "0", "99999"])
def test_issue12_item3_a_port_the_allow_list_does_not_name_is_refused_at_send(mocked, port):
    url = f"https://www.xledger.net:{port}/graphql"
    mocked.post(url, json={"data": {}})
    config = xl_config(graphql_url=url, allowed_hosts=("www.xledger.net",))

    with pytest.raises(ConnectorError) as caught:
        xl.XledgerConnector(config).list_accounts()

    assert caught.value.outcome is Outcome.AUTHENTICATION
    assert "not one this server may contact" in caught.value.message
    assert XL_TOKEN not in caught.value.message
    assert list(mocked.calls) == []  # nothing, not even the token header, left the server


def test_issue12_item3_a_next_link_off_the_allow_list_is_not_followed(mocked):
    session = gw_http.make_session(True, allowed=gw_http.AllowList.of_urls(XL_URL))
    mocked.get(f"{EVIL}/page2", json={"value": []})
    with pytest.raises(gw_http.AddressRefused) as caught:
        session.get(f"{EVIL}/page2", headers={"Authorization": "Bearer secret"})
    assert caught.value.failure.cause is gw_http.Cause.NOT_ALLOWED
    assert list(mocked.calls) == []


# --- MSAL: the secret goes to the sign-in host's own token endpoint only ------------------------


@pytest.mark.parametrize("allowed_hosts", [None, ("login.example.test", "evil.example.test")])
def test_issue12_item3_msal_sends_no_secret_to_a_token_endpoint_on_another_host(
    mocked, allowed_hosts
):
    document = {**openid_configuration(), "token_endpoint": f"{EVIL}/{TENANT}/oauth2/v2.0/token"}
    mocked.get(f"{AUTHORITY_HOST}/{TENANT}/v2.0/.well-known/openid-configuration", json=document)
    mocked.post(
        f"{EVIL}/{TENANT}/oauth2/v2.0/token",
        json={"token_type": "Bearer", "expires_in": 3599, "access_token": "stolen"},
    )
    connector = bc.BusinessCentralConnector(bc_config(allowed_hosts=allowed_hosts))

    with pytest.raises(ConnectorError) as caught:
        connector.list_accounts()

    assert caught.value.outcome is Outcome.AUTHENTICATION
    assert "The client secret was not sent" in caught.value.message
    assert calls_to(mocked, EVIL) == []
    assert all(BC_SECRET not in str(c.request.body or "") for c in mocked.calls)
    assert bc._apps == {}  # not kept: the next call reads the document again


def test_issue12_item3_a_tenant_that_would_change_the_path_sends_nothing(mocked):
    connector = bc.BusinessCentralConnector(bc_config(tenant_id="../../../evil-path"))
    with pytest.raises(ConnectorError) as caught:
        connector.list_accounts()
    assert "tenant ID" in caught.value.message
    assert list(mocked.calls) == []
    # And were it sent, it would stay one path segment.
    assert "/..%2F..%2F..%2Fevil-path/" in bc_config(tenant_id="../../../evil-path").api_root


# --- the settings form ---------------------------------------------------------------------


@pytest.mark.parametrize("port", ["22", "0", "99999"])
def test_issue12_item3_a_port_is_refused_at_save(admin_client, org, port):
    response = save(
        admin_client, org, {**XLEDGER_FORM, "base_url": f"https://www.xledger.net:{port}/graphql"}
    )
    assert response.status_code == 200
    assert "Only port 443 may be used" in " ".join(response.context["form"].errors["base_url"])


def test_issue12_item3_the_sandbox_port_is_accepted_with_debug(admin_client, org, settings):
    assert "localhost:*" in settings.ERP_ALLOWED_HOSTS  # DEBUG, as make run and make test set
    response = save(
        admin_client, org, {**XLEDGER_FORM, "base_url": "https://localhost:8443/graphql"}
    )
    assert response.status_code == 302


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("tenant_id", "../../../evil-path", "tenant ID as a GUID"),
        ("tenant_id", "contoso.onmicrosoft.com/../x", "tenant ID as a GUID"),
        ("environment", "production/../../x", "environment's name"),
        ("environment", "a" * 31, "environment's name"),
        ("company_id", "HLF", "company ID as a GUID"),
    ],
)
def test_issue12_item3_business_central_path_fields_are_taken_only_in_their_shape(
    admin_client, org, field, value, words
):
    response = save(admin_client, org, {**BC_FORM, field: value})
    assert response.status_code == 200
    assert words in " ".join(response.context["form"].errors[field])


def test_issue12_item3_a_tenant_domain_name_is_accepted(admin_client, org):
    response = save(admin_client, org, {**BC_FORM, "tenant_id": "contoso.onmicrosoft.com"})
    assert response.status_code == 302


def test_issue12_item3_the_sign_in_address_must_be_microsofts(admin_client, org):
    response = save(
        admin_client, org, {**BC_FORM, "authority_host": "https://api.businesscentral.dynamics.com"}
    )
    assert response.status_code == 200
    assert "sign-in address must be on" in " ".join(
        response.context["form"].errors["authority_host"]
    )


@pytest.mark.parametrize(
    ("form", "field", "secret", "new_address"),
    [
        (XLEDGER_FORM, "api_token", "api_token", {"base_url": "https://demo.xledger.net/graphql"}),
        (BC_FORM, "client_secret", "client_secret", {"base_url": "https://localhost:8443"}),
        (BC_FORM, "client_secret", "client_secret", {"authority_host": "https://localhost:8443"}),
    ],
)
def test_issue12_item3_changing_the_address_without_the_secret_is_refused(
    admin_client, org, form, field, secret, new_address
):
    save(admin_client, org, form)
    before = Integration.objects.get(organization=org)

    response = save(admin_client, org, {**form, **new_address, field: ""})

    assert response.status_code == 200
    assert response.context["form"].errors[field] == ["Type the secret again: the address changed."]
    after = Integration.objects.get(organization=org)
    assert after.credentials_ciphertext == before.credentials_ciphertext
    assert after.base_url == before.base_url and after.authority_host == before.authority_host


def test_issue12_item3_a_secret_typed_again_with_the_new_address_is_saved_and_recorded(
    admin_client, org
):
    save(admin_client, org, XLEDGER_FORM)
    new = {**XLEDGER_FORM, "base_url": "https://demo.xledger.net/graphql", "api_token": "new-tok"}

    assert save(admin_client, org, new).status_code == 302

    integration = Integration.objects.get(organization=org)
    assert integration.credentials() == {"api_token": "new-tok"}
    change = AdminAction.objects.filter(kind="credentials_changed").first()
    assert change is not None
    assert change.detail["reason"] == "the address changed: saved secrets cleared"
    assert change.detail["fields"] == ["api_token"]
    assert "new-tok" not in str(change.detail)


def test_issue12_item3_the_stored_secret_never_reaches_a_changed_address(
    admin_client, org, mocked, settings
):
    """Changed outside the settings form (Django's admin, a shell): the secret stays behind."""
    settings.ERP_CA_BUNDLE = ""
    save(admin_client, org, XLEDGER_FORM)
    integration = Integration.objects.get(organization=org)
    integration.base_url = "https://demo.xledger.net/graphql"
    integration.save()
    mocked.post(integration.base_url, json={"errors": [{"message": "Bad format for API Token"}]})

    integration = Integration.objects.get(organization=org)
    assert integration.credentials() == {}
    assert integration.why_not_enable() == "Save the credentials first."
    with pytest.raises(ConnectorError):
        integration.build_connector().list_accounts()
    sent = " ".join(str(c.request.headers.get("Authorization")) for c in mocked.calls)
    assert XLEDGER_FORM["api_token"] not in sent

    integration.base_url = XLEDGER_FORM["base_url"]  # back where it was typed for
    assert integration.credentials() == {"api_token": XLEDGER_FORM["api_token"]}
