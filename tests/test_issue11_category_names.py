"""Category names (issue 11 item 5): an organization names its categories on the mappings
page, and its pages show the name where they showed the slug; exports keep the slug."""

from __future__ import annotations

import csv
import html as htmllib
import io
import json
import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from accounting_sync.models import FinancialRecord, SyncLog
from audit.models import AdminAction
from core.events import TrailKind
from integrations.models import CategoryName, Integration
from tests.factories import configure, make_records, sync
from tests.test_dashboard import text_of
from tests.test_failed_records import failed_org

pytestmark = pytest.mark.django_db

NORWEGIAN = "nb-NO,nb;q=0.9,en;q=0.5"


@pytest.fixture
def enabled(org, erp_sandbox, settings) -> Integration:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    return configure(org, erp_sandbox)


def client_for(user, **headers: Any) -> Client:
    client = Client(**headers)
    client.force_login(user)
    return client


def get(client: Client, name: str, org, *args) -> str:
    response = client.get(reverse(name, args=[org.slug, *args]))
    assert response.status_code == 200
    return response.content.decode()


def form_as_shown(page: str) -> dict[str, str]:
    """What a browser would post from the mappings form as the page shows it."""
    form = re.search(r'<form method="post" novalidate>(.*?)</form>', page, re.S)
    assert form is not None
    data: dict[str, str] = {}
    for tag in re.findall(r"<input[^>]*>", form.group(1)):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and name.group(1) != "csrfmiddlewaretoken":
            data[name.group(1)] = htmllib.unescape(value.group(1)) if value else ""
    selects = re.findall(r'<select name="([^"]+)"[^>]*>(.*?)</select>', form.group(1), re.S)
    for name, options in selects:
        chosen = re.search(r'<option value="([^"]*)"[^>]*selected', options)
        data[name] = chosen.group(1) if chosen else ""
    return data


def name_field(page: str, category: str) -> str:
    """The input that names `category`, found by its label as a screen reader finds it."""
    found = re.search(rf'<label[^>]*for="id_(name_\d+)">Name shown for {category}</label>', page)
    assert found, f"no name input for {category}"
    return found.group(1)


# --- naming on the mappings page (S1.5) --------------------------------------------------------


def test_s1_5_names_are_saved_stripped_with_the_mappings_in_one_trail_entry(
    org, org_admin, enabled
) -> None:
    make_records(org, 2, category="parkering")  # waits unmapped: it can be named all the same
    client = client_for(org_admin)
    page = get(client, "integration_mappings", org)
    data = form_as_shown(page)
    data[name_field(page, "travel")] = "  Reise og transport  "
    data[name_field(page, "parkering")] = "Parkering"

    response = client.post(reverse("integration_mappings", args=[org.slug]), data)

    assert response.status_code == 302
    assert dict(CategoryName.objects.filter(organization=org).values_list("category", "name")) == {
        "travel": "Reise og transport",
        "parkering": "Parkering",
    }
    trail = AdminAction.objects.filter(organization=org, kind=TrailKind.MAPPINGS_CHANGED)
    assert trail.count() == 1
    assert trail.get().detail == {
        "names": {
            "parkering": {"from": "", "to": "Parkering"},
            "travel": {"from": "", "to": "Reise og transport"},
        }
    }
    page = get(client, "integration_mappings", org)
    assert 'value="Reise og transport"' in page
    # The trail says it in words.
    said = get(client, "admin_trail", org)
    assert "Category names" in said and "travel: — → Reise og transport" in said

    # Cleared, the slug is shown again, and the clearing is trailed too.
    data = form_as_shown(page)
    data[name_field(page, "travel")] = ""
    assert client.post(reverse("integration_mappings", args=[org.slug]), data).status_code == 302
    assert not CategoryName.objects.filter(organization=org, category="travel").exists()
    assert trail.latest("pk").detail == {
        "names": {"travel": {"from": "Reise og transport", "to": ""}}
    }
    # Saving again unchanged writes no trail entry.
    page = get(client, "integration_mappings", org)
    client.post(reverse("integration_mappings", args=[org.slug]), form_as_shown(page))
    assert trail.count() == 2


def test_s1_5_a_name_longer_than_64_characters_is_refused_and_nothing_is_saved(
    org, org_admin, enabled
) -> None:
    client = client_for(org_admin)
    page = get(client, "integration_mappings", org)
    data = form_as_shown(page)
    data[name_field(page, "travel")] = "R" * 65
    data[name_field(page, "honorarium")] = "Honorar"

    response = client.post(reverse("integration_mappings", args=[org.slug]), data)

    assert response.status_code == 200
    assert "Ensure this value has at most 64 characters (it has 65)." in response.content.decode()
    assert not CategoryName.objects.exists()
    assert not AdminAction.objects.filter(kind=TrailKind.MAPPINGS_CHANGED).exists()


def test_s1_5_a_new_category_can_be_named_as_it_is_added(org, org_admin, enabled) -> None:
    client = client_for(org_admin)
    data = form_as_shown(get(client, "integration_mappings", org))
    data |= {
        "new_category": "course_fee",
        "new_name": "Kursavgift",
        "new_account": "7130",
        "new_cost_center": "300",
    }
    assert client.post(reverse("integration_mappings", args=[org.slug]), data).status_code == 302
    assert CategoryName.objects.get(organization=org, category="course_fee").name == "Kursavgift"
    assert enabled.mappings.filter(category="course_fee").exists()


# --- the name where pages showed the slug --------------------------------------------------------


def words(text: str) -> str:
    return " ".join(text.split())


def name(org, category: str, shown: str) -> None:
    CategoryName.objects.create(organization=org, category=category, name=shown)


def test_s4_3_the_dashboard_and_history_show_a_named_category_by_its_name_and_others_by_slug(
    org, org_admin, other_org, enabled
) -> None:
    make_records(org, 5, category="parkering")
    make_records(org, 2, category="course_fee")
    name(org, "parkering", "Parkering og bom")
    name(other_org, "course_fee", "Another organization's name")
    run = sync(org)
    assert run.skipped == 7

    english = client_for(org_admin)
    dashboard = get(english, "organization_home", org)
    assert words(text_of(dashboard, "waiting-for-mapping")).startswith(
        "7 records waiting for a mapping: Parkering og bom (5), course_fee (2)."
    )
    assert "Another organization" not in dashboard
    assert "Not mapped yet: course_fee, Parkering og bom." in words(dashboard)
    history = get(english, "sync_history", org)
    assert "5 waiting for a mapping: Parkering og bom" in history
    assert "2 waiting for a mapping: course_fee" in history

    norwegian = client_for(org_admin, HTTP_ACCEPT_LANGUAGE=NORWEGIAN)
    dashboard = get(norwegian, "organization_home", org)
    assert words(text_of(dashboard, "waiting-for-mapping")).startswith(
        "7 bilag venter på kontering: Parkering og bom (5), course_fee (2)."
    )
    history = get(norwegian, "sync_history", org)
    assert "5 venter på kontering: Parkering og bom" in history
    assert "2 venter på kontering: course_fee" in history


def test_s4_3_a_run_worded_alone_reads_the_names_of_its_own_organization(
    org, other_org, enabled
) -> None:
    make_records(org, 3, category="parkering")
    name(org, "parkering", "Parkering")
    name(other_org, "parkering", "Elsewhere")
    run = sync(org)
    assert run.skip_texts() == ["3 waiting for a mapping: Parkering"]


def test_s6_1_failed_records_show_the_category_name_in_english_and_norwegian(
    org, org_admin, erp_sandbox, settings
) -> None:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    failed_org(org, erp_sandbox, 2)  # category travel
    name(org, "travel", "Reise og transport")

    for client in (client_for(org_admin), client_for(org_admin, HTTP_ACCEPT_LANGUAGE=NORWEGIAN)):
        page = get(client, "failed_records", org)
        assert page.count('<span class="muted">Reise og transport</span>') == 2
        assert '<span class="muted">travel</span>' not in page


def test_s6_1_an_unnamed_category_is_shown_by_its_slug_on_failed_records(
    org, org_admin, erp_sandbox, settings
) -> None:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    failed_org(org, erp_sandbox, 1)
    page = get(client_for(org_admin), "failed_records", org)
    assert '<span class="muted">travel</span>' in page


# --- the auditor's raw value -------------------------------------------------------------------


def test_s8_5_exports_keep_the_slug_and_the_entry_shows_the_name_with_it(
    org, auditor, erp_sandbox, settings
) -> None:
    settings.ERP_CA_BUNDLE = str(erp_sandbox.ca_bundle)
    failed_org(org, erp_sandbox, 1)
    name(org, "travel", "Reise og transport")
    client = client_for(auditor)

    csv_text = client.get(reverse("audit_export", args=[org.slug, "csv"])).getvalue().decode()
    rows = list(csv.DictReader(io.StringIO(csv_text.lstrip("\ufeff")), delimiter=";"))
    assert rows and {row["category"] for row in rows} == {"travel"}
    assert "Reise" not in csv_text

    json_text = client.get(reverse("audit_export", args=[org.slug, "json"])).getvalue().decode()
    assert '"category": "travel"' in json_text.replace('":"', '": "')
    assert "Reise" not in json_text
    json.loads(json_text)  # still one document

    entry = SyncLog.objects.filter(organization=org).latest("pk")
    page = get(client, "audit_entry", org, entry.pk)
    assert "Reise og transport (travel)" in page
    assert FinancialRecord.objects.get(pk=entry.record_id).category == "travel"
