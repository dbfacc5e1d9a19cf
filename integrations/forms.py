from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from django import forms
from django.db import models, transaction
from django.utils import formats, timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from core.events import TrailKind, record_action
from integrations import schedule
from integrations.models import CategoryName, Integration

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

Connector = Integration.Connector

# Which fields each ERP shows, in order (S1.1: only that system's fields).
FIELDS_BY_CONNECTOR: dict[str, tuple[str, ...]] = {
    Connector.XLEDGER: (
        "base_url",
        "xledger_auth",
        "api_token",
        "token_url",
        "client_id",
        "oauth_scope",
        "client_secret",
        "cost_center_object",
        "cost_center_kind_db_id",
        "xledger_claimant_subledger",
    ),
    Connector.BUSINESS_CENTRAL: (
        "base_url",
        "authority_host",
        "tenant_id",
        "environment",
        "company_id",
        "client_id",
        "client_secret",
        "journal_code",
        "cost_center_dimension",
    ),
}
REQUIRED_BY_CONNECTOR: dict[str, tuple[str, ...]] = {
    Connector.XLEDGER: ("base_url",),
    Connector.BUSINESS_CENTRAL: (
        "base_url",
        "authority_host",
        "tenant_id",
        "environment",
        "company_id",
        "client_id",
        "journal_code",
        "cost_center_dimension",
    ),
}
REQUIRED_FOR_XLEDGER_OAUTH2 = ("token_url", "client_id")
# Xledger's fields of each way of signing in: only the chosen way's are in the form.
XLEDGER_AUTH_FIELDS: dict[str, tuple[str, ...]] = {
    Integration.XledgerAuth.TOKEN: ("api_token",),
    Integration.XledgerAuth.OAUTH2: ("token_url", "client_id", "oauth_scope", "client_secret"),
}
# The models' help texts name both systems; the form says only what holds for the shown one.
HELP_TEXTS: dict[str, dict[str, StrOrPromise]] = {
    Connector.XLEDGER: {
        "base_url": gettext_lazy("The address of Xledger's GraphQL API."),
        "cost_center_object": gettext_lazy("Which glObject (1 to 5) holds the cost center."),
        "cost_center_kind_db_id": gettext_lazy("The object kind whose values are cost centers."),
        "xledger_claimant_subledger": gettext_lazy(
            "Claimants exist in Xledger as employees or suppliers under their reference, "
            "so each claimant is sent as the subledger of the payable line."
        ),
    },
    Connector.BUSINESS_CENTRAL: {
        "base_url": gettext_lazy("The host of the Business Central API."),
        "authority_host": gettext_lazy("The Entra ID (Azure AD) sign-in host."),
        "cost_center_dimension": gettext_lazy("The dimension whose values are cost centers."),
    },
}
LABELS: dict[str, dict[str, StrOrPromise]] = {
    "base_url": {
        Connector.XLEDGER: gettext_lazy("GraphQL endpoint"),
        Connector.BUSINESS_CENTRAL: gettext_lazy("API host"),
    },
    "client_id": {
        Connector.XLEDGER: gettext_lazy("OAuth2 client ID"),
        Connector.BUSINESS_CENTRAL: gettext_lazy("Application (client) ID"),
    },
    "client_secret": {
        Connector.XLEDGER: gettext_lazy("OAuth2 client secret"),
        Connector.BUSINESS_CENTRAL: gettext_lazy("Client secret"),
    },
}
DEFAULTS: dict[str, dict[str, str]] = {
    Connector.XLEDGER: {"base_url": "https://www.xledger.net/graphql"},
    Connector.BUSINESS_CENTRAL: {
        "base_url": "https://api.businesscentral.dynamics.com",
        "authority_host": "https://login.microsoftonline.com",
        "environment": "production",
        "cost_center_dimension": "AVDELING",
        "journal_code": "UTLEGG",
    },
}


def _https_by_default(field, **kwargs) -> forms.Field | None:
    # An address typed without a scheme means https: these hosts accept nothing else.
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class SecretInput(forms.PasswordInput):
    """Never renders a saved value: secrets are write-only once saved (S1.4)."""

    def __init__(self) -> None:
        super().__init__(render_value=False, attrs={"autocomplete": "new-password"})


class IntegrationSettingsForm(forms.ModelForm):
    api_token = forms.CharField(
        required=False,
        widget=SecretInput(),
        label=gettext_lazy("API token"),
        max_length=2000,
        strip=True,
    )
    client_secret = forms.CharField(
        required=False, widget=SecretInput(), max_length=2000, strip=True
    )

    class Meta:
        model = Integration
        fields = (
            "connector",
            "base_url",
            "authority_host",
            "xledger_auth",
            "token_url",
            "client_id",
            "oauth_scope",
            "tenant_id",
            "environment",
            "company_id",
            "cost_center_object",
            "cost_center_kind_db_id",
            "cost_center_dimension",
            "journal_code",
            "xledger_claimant_subledger",
        )
        widgets = {"connector": forms.RadioSelect, "xledger_auth": forms.RadioSelect}
        formfield_callback = _https_by_default
        labels = {
            "connector": gettext_lazy("Accounting system"),
            "xledger_auth": gettext_lazy("Authentication"),
            "authority_host": gettext_lazy("Sign-in host (Entra ID)"),
            "token_url": gettext_lazy("OAuth2 token URL"),
            "oauth_scope": gettext_lazy("OAuth2 scope"),
            "tenant_id": gettext_lazy("Tenant ID"),
            "environment": gettext_lazy("Environment"),
            "company_id": gettext_lazy("Company ID"),
            "cost_center_object": gettext_lazy("Cost center dimension (glObject number)"),
            "cost_center_kind_db_id": gettext_lazy("Cost center object kind (dbId)"),
            "cost_center_dimension": gettext_lazy("Cost center dimension code"),
            "journal_code": gettext_lazy("Journal code"),
            "xledger_claimant_subledger": gettext_lazy("Send claimants as subledger"),
        }

    def __init__(self, *args, connector: str, xledger_auth: str | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.connector = connector
        # Validation writes the posted values into the instance; remember what was saved.
        self.saved_connector = self.instance.connector if self.instance.pk else None
        if xledger_auth not in Integration.XledgerAuth.values:
            xledger_auth = self.instance.xledger_auth or Integration.XledgerAuth.TOKEN
        self.xledger_auth = xledger_auth
        self.initial["xledger_auth"] = xledger_auth  # the way whose fields are shown is checked
        # Only the chosen system's fields exist in the form, and of Xledger's ways of
        # signing in only the chosen one's, so other saved values are neither shown nor
        # overwritten.
        keep = {"connector", *self._field_names()}
        for name in [name for name in self.fields if name not in keep]:
            del self.fields[name]
        cast(forms.ChoiceField, self.fields["connector"]).choices = Connector.choices
        self.initial["connector"] = connector  # the system whose fields are shown is checked
        for name, by_connector in LABELS.items():
            if name in self.fields:
                self.fields[name].label = by_connector[connector]
        for name, text in HELP_TEXTS[connector].items():
            self.fields[name].help_text = text
        if self.instance.pk is None or self.instance.connector != connector:
            for name, value in DEFAULTS[connector].items():
                if not self.initial.get(name):  # the model's blank value is no choice
                    self.initial[name] = value
        same_system = self.instance.pk and self.instance.connector == connector
        saved = set(self.instance.credentials()) if same_system else set()
        for name in saved & set(self.fields):
            self.fields[name].help_text = _("Saved. Leave blank to keep it; type to replace it.")

    @property
    def connector_choice(self) -> str:
        """The system whose fields are shown (its setup needs are shown with them)."""
        return self.connector

    def _field_names(self) -> list[str]:
        if self.connector != Connector.XLEDGER:
            return list(FIELDS_BY_CONNECTOR[self.connector])
        other_ways = {
            name
            for way, names in XLEDGER_AUTH_FIELDS.items()
            if way != self.xledger_auth
            for name in names
        }
        return [name for name in FIELDS_BY_CONNECTOR[self.connector] if name not in other_ways]

    def visible_connection_fields(self) -> list[forms.BoundField]:
        """The fields shown in order; Xledger's sign-in fields come with its choice."""
        auth = self.auth_fields_names()
        return [self[name] for name in self._field_names() if name not in auth]

    def auth_fields_names(self) -> tuple[str, ...]:
        if self.connector != Connector.XLEDGER:
            return ()
        return XLEDGER_AUTH_FIELDS[self.xledger_auth]

    def auth_fields(self) -> list[forms.BoundField]:
        """The chosen way of signing in to Xledger: shown right after the choice."""
        return [self[name] for name in self.auth_fields_names()]

    def clean(self) -> dict:
        data = super().clean()
        assert data is not None  # a ModelForm's clean() returns cleaned_data
        connector = data.get("connector") or self.connector
        required = list(REQUIRED_BY_CONNECTOR[connector])
        if connector == Connector.XLEDGER and data.get("xledger_auth") == "oauth2":
            required += REQUIRED_FOR_XLEDGER_OAUTH2
        for name in required:
            if not data.get(name) and name not in self.errors:
                self.add_error(name, _("This is needed to connect."))
        saved = self.instance.credentials() if self.instance.has_credentials else {}
        same_system = self.instance.pk and self.instance.connector == connector
        for name in self._secret_names(connector, data.get("xledger_auth")):
            if data.get(name) or name in self.errors:
                continue
            if same_system and saved.get(name) and self.changes_address:
                # A saved secret is never sent to an address it was not typed for.
                self.add_error(name, _("Type the secret again: the address changed."))
            elif not (same_system and saved.get(name)):
                self.add_error(name, _("This is needed to connect."))
        return data

    @property
    def changes_address(self) -> bool:
        """Whether this save changes where secrets are sent (the system or an address)."""
        if self.switches_system:
            return True
        return any(name in self.changed_data for name in Integration.ADDRESS_FIELDS)

    @staticmethod
    def _secret_names(connector: str, xledger_auth: str | None) -> tuple[str, ...]:
        if connector == Connector.XLEDGER:
            return Integration.SECRET_FIELDS[f"xledger:{xledger_auth or 'token'}"]
        return Integration.SECRET_FIELDS[connector]

    def secrets(self) -> dict[str, str]:
        names = ("api_token", "client_secret")
        return {name: self.cleaned_data.get(name) or "" for name in names if name in self.fields}

    @property
    def switches_system(self) -> bool:
        return self.saved_connector is not None and self.saved_connector != self.connector

    def changed_fields(self) -> list[str]:
        """What this save changes; secrets by name only."""
        names = [name for name in self.changed_data if name != "connector"]
        return ["connector", *names] if self.switches_system else names

    def changed_connection_fields(self) -> list[str]:
        return [name for name in self.changed_fields() if name in Integration.CONNECTION_FIELDS]

    def save_for(self, actor) -> Integration:
        """Save, and record who changed what (never a secret's value) (S1.6)."""
        integration = self.instance
        created = integration.pk is None
        switching = self.switches_system
        new_address = not created and self.changes_address and integration.has_credentials
        was_enabled = integration.enabled
        with transaction.atomic():
            if switching:
                # The other system's secrets and account codes mean nothing here.
                integration.mappings.all().delete()
            if new_address:
                # Only what was typed in this save goes to the new address (clean() asked
                # for every secret again); nothing saved for the old one is kept.
                integration.credentials_ciphertext = ""
            integration = super().save(commit=False)
            secrets_changed = integration.set_credentials(self.secrets())
            if created or self.changed_connection_fields() or secrets_changed:
                integration.forget_connection_test()
            integration.save()
            organization = integration.organization
            fields = [f for f in self.changed_fields() if f not in ("api_token", "client_secret")]
            if created or fields:
                record_action(
                    actor,
                    organization,
                    TrailKind.INTEGRATION_CHANGED,
                    connector=integration.connector,
                    fields=fields,
                    created=created,
                )
            if secrets_changed or new_address:
                # In English, like the trail's other reasons.
                reason = {"reason": "the address changed: saved secrets cleared"}
                record_action(
                    actor,
                    organization,
                    TrailKind.CREDENTIALS_CHANGED,
                    connector=integration.connector,
                    fields=secrets_changed,
                    **(reason if new_address else {}),
                )
            if was_enabled and not integration.enabled:
                record_action(
                    actor,
                    organization,
                    TrailKind.CONNECTOR_DISABLED,
                    reason="the connection settings changed",
                )
        return integration


class MappingsForm(forms.Form):
    """Each expense category → an account and a cost center the ERP listed (S1.5)."""

    def __init__(self, *args, integration: Integration, categories: list[str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.integration = integration
        self.categories = categories
        erp = integration.get_connector_display()
        tested = integration.connection_verified_at
        # "%(value)s" stays for Django to fill with the refused choice.
        said = {"erp": erp, "value": "%(value)s"}
        if tested:
            when = formats.date_format(timezone.localtime(tested), "SHORT_DATETIME_FORMAT")
            not_listed = _(
                "%(value)s is not in what %(erp)s returned at the last connection test on "
                "%(when)s. If it was added since, run Test Connection again."
            ) % {**said, "when": when}
        else:
            not_listed = (
                _(
                    "%(value)s is not in what %(erp)s returned at the last connection test. "
                    "If it was added since, run Test Connection again."
                )
                % said
            )
        not_mapped = ("", _("— not mapped —"))
        accounts = [not_mapped] + [
            (a["code"], f"{a['code']} {a['name']}") for a in integration.erp_accounts
        ]
        centers = [not_mapped] + [
            (c["code"], f"{c['code']} {c['name']}") for c in integration.erp_cost_centers
        ]
        messages = {"invalid_choice": not_listed}
        existing = {m.category: m for m in integration.mappings.all()}
        self.names_before = dict(
            CategoryName.objects.filter(organization_id=integration.organization_id).values_list(
                "category", "name"
            )
        )
        for index, category in enumerate(categories):
            mapping = existing.get(category)
            self.fields[f"name_{index}"] = self._name_field(
                _("Name shown for %(category)s") % {"category": category},
                self.names_before.get(category, ""),
            )
            self.fields[f"account_{index}"] = forms.ChoiceField(
                choices=accounts,
                required=False,
                label=_("Account for %(category)s") % {"category": category},
                error_messages=messages,
                initial=mapping.account_code if mapping else "",
            )
            self.fields[f"cost_center_{index}"] = forms.ChoiceField(
                choices=centers,
                required=False,
                label=_("Cost center for %(category)s") % {"category": category},
                error_messages=messages,
                initial=mapping.cost_center_code if mapping else "",
            )
        self.fields["new_category"] = forms.SlugField(
            required=False,
            max_length=64,
            label=_("New category"),
            help_text=_("A category the volunteer app will send that has no records yet."),
        )
        self.fields["new_name"] = self._name_field(_("Name shown"), "")
        self.fields["new_account"] = forms.ChoiceField(
            choices=accounts, required=False, label=_("Account"), error_messages=messages
        )
        self.fields["new_cost_center"] = forms.ChoiceField(
            choices=centers, required=False, label=_("Cost center"), error_messages=messages
        )
        self.fields["payable_account"] = forms.ChoiceField(
            choices=accounts,
            required=False,
            error_messages=messages,
            label=_("Payable account (credited)"),
            initial=integration.payable_account,
            help_text=_("What the organization owes the volunteer, e.g. 2910 Gjeld til ansatte."),
        )

    @staticmethod
    def _name_field(label: str, initial: str) -> forms.CharField:
        # Blank shows the slug, as before names existed; strip=True drops stray spaces.
        return forms.CharField(
            required=False,
            max_length=64,
            label=label,
            initial=initial,
            help_text=_("Blank shows the category as the volunteer app sends it."),
        )

    def rows(self) -> list[tuple[str, forms.BoundField, forms.BoundField, forms.BoundField]]:
        return [
            (
                category,
                self[f"name_{index}"],
                self[f"account_{index}"],
                self[f"cost_center_{index}"],
            )
            for index, category in enumerate(self.categories)
        ]

    def clean(self) -> dict:
        data = super().clean()
        assert data is not None  # a ModelForm's clean() returns cleaned_data
        pairs = [(f"account_{i}", f"cost_center_{i}") for i in range(len(self.categories))]
        pairs.append(("new_account", "new_cost_center"))
        for account, center in pairs:
            if bool(data.get(account)) != bool(data.get(center)):
                missing = center if data.get(account) else account
                if missing not in self.errors:
                    self.add_error(
                        missing, _("Choose both an account and a cost center, or neither.")
                    )
        if data.get("new_category") and not data.get("new_account"):
            self.add_error("new_account", _("Choose where the new category is posted."))
        if data.get("new_name") and not data.get("new_category"):
            self.add_error("new_category", _("Enter the category this name is for."))
        if data.get("new_category") in self.categories:
            self.add_error("new_category", _("This category is already in the list above."))
        self._refuse_payable_as_expense(data, [account for account, _center in pairs])
        return data

    def _refuse_payable_as_expense(self, data: dict, account_fields: list[str]) -> None:
        """An entry that debits and credits one account moves nothing: the ERP would
        take it, and the claim would vanish from the books without a trace."""
        payable = data.get("payable_account")
        if not payable:
            return
        for name in account_fields:
            if data.get(name) == payable and name not in self.errors:
                self.add_error(
                    name,
                    _(
                        "%(account)s is the payable account. An expense account must be "
                        "another account, or the entry would debit and credit the same one."
                    )
                    % {"account": payable},
                )

    def save_for(self, actor) -> None:
        integration = self.integration
        before = {
            m.category: (m.account_code, m.cost_center_code) for m in integration.mappings.all()
        }
        after = {category: pair for category, pair in self.chosen().items() if pair}
        changes: dict[str, dict[str, list[str] | str]] = {
            category: {
                "from": list(before.get(category) or []),
                "to": list(after.get(category) or []),
            }
            for category in sorted(set(before) | set(after))
            if before.get(category) != after.get(category)
        }
        payable = self.cleaned_data.get("payable_account") or ""
        if payable != integration.payable_account:
            changes["payable account"] = {"from": integration.payable_account, "to": payable}
        names_after = self.chosen_names()
        names = {
            category: {"from": self.names_before.get(category, ""), "to": name}
            for category, name in sorted(names_after.items())
            if self.names_before.get(category, "") != name
        }
        if not changes and not names:
            return
        # One trail entry for one press of Save; each part only when it changed.
        detail = {key: value for key, value in (("changes", changes), ("names", names)) if value}
        with transaction.atomic():
            for category, pair in after.items():
                integration.mappings.update_or_create(
                    category=category,
                    defaults={"account_code": pair[0], "cost_center_code": pair[1]},
                )
            integration.mappings.exclude(category__in=after).delete()
            # Records held back for want of a mapping can go now (DESIGN: skipped → pending).
            integration.organization.records.filter(
                state="skipped", category__in=list(after)
            ).update(state="pending", skip_reason="")
            integration.payable_account = payable
            integration.save(update_fields=["payable_account", "updated_at"])
            self._save_names(names_after)
            record_action(actor, integration.organization, TrailKind.MAPPINGS_CHANGED, **detail)

    def _save_names(self, names: dict[str, str]) -> None:
        organization_id = self.integration.organization_id
        named = {category: name for category, name in names.items() if name}
        CategoryName.objects.filter(
            organization_id=organization_id,
            category__in=[category for category, name in names.items() if not name],
        ).delete()
        for category, name in named.items():
            CategoryName.objects.update_or_create(
                organization_id=organization_id, category=category, defaults={"name": name}
            )

    def chosen_names(self) -> dict[str, str]:
        """category → the name pages show ("" shows the slug), for the categories on the form."""
        data = self.cleaned_data
        result = {
            category: data.get(f"name_{index}") or ""
            for index, category in enumerate(self.categories)
        }
        if data.get("new_category"):
            result[data["new_category"]] = data.get("new_name") or ""
        return result

    def chosen(self) -> dict[str, tuple[str, str] | None]:
        """category → (account, cost center), or None for "not mapped"."""
        data = self.cleaned_data
        result: dict[str, tuple[str, str] | None] = {}
        for index, category in enumerate(self.categories):
            account, center = data.get(f"account_{index}"), data.get(f"cost_center_{index}")
            # clean() requires a cost center with every account
            result[category] = (account, cast(str, center)) if account else None
        if data.get("new_category"):
            result[data["new_category"]] = (data["new_account"], data["new_cost_center"])
        return result


class ScheduleForm(forms.ModelForm):
    """When syncs run automatically, what they include, and how failures retry (S9.1, S9.7)."""

    # The inputs each choice needs; the others are hidden on the page and cleared on save.
    NEEDS: ClassVar[dict[str, tuple[str, ...]]] = {
        Integration.Schedule.MANUAL: (),
        Integration.Schedule.DAILY: ("schedule_time",),
        Integration.Schedule.WEEKLY: ("schedule_time", "schedule_weekday"),
        Integration.Schedule.MONTHLY: ("schedule_time", "schedule_day"),
        Integration.Schedule.CUSTOM: ("schedule_cron",),
    }
    SCHEDULE_FIELDS = (
        "schedule",
        "schedule_time",
        "schedule_weekday",
        "schedule_day",
        "schedule_cron",
    )

    schedule_weekday = forms.TypedChoiceField(
        label=gettext_lazy("Day of the week"),
        choices=[("", "—"), *schedule.weekday_choices()],
        coerce=int,
        empty_value=None,
        required=False,
    )

    class Meta:
        model = Integration
        fields = (
            "schedule",
            "schedule_time",
            "schedule_weekday",
            "schedule_day",
            "schedule_cron",
            "sync_after_approval",
            "include_reimbursements",
            "include_honorariums",
            "automatic_retries",
            "first_retry_delay_seconds",
        )
        widgets = {
            "schedule": forms.RadioSelect,
            "schedule_time": forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
            "schedule_cron": forms.TextInput(
                attrs={"autocomplete": "off", "spellcheck": "false", "class": "cron"}
            ),
        }
        labels = {
            "schedule": gettext_lazy("Sync schedule"),
            "schedule_time": gettext_lazy("Time"),
            "schedule_day": gettext_lazy("Day of the month"),
            "schedule_cron": gettext_lazy("Cron expression"),
            "sync_after_approval": gettext_lazy("Sync after each approval"),
            "include_reimbursements": gettext_lazy("Reimbursements"),
            "include_honorariums": gettext_lazy("Honorariums"),
            "automatic_retries": gettext_lazy("Automatic retries of a failed record"),
            "first_retry_delay_seconds": gettext_lazy("First retry after (seconds)"),
        }
        help_texts = {
            "schedule_day": gettext_lazy(
                "29, 30 or 31: in shorter months the sync runs on the last day."
            ),
            "schedule_cron": gettext_lazy(
                "Five fields: minute, hour, day-of-month, month, day-of-week. "
                "For example 0 2 * * 1-5 is 02:00 Monday to Friday."
            ),
            "sync_after_approval": gettext_lazy(
                "Send each approved record within seconds, besides the schedule."
            ),
            "automatic_retries": gettext_lazy(
                "0 to 20. After these, a failed record waits for Retry."
            ),
            "first_retry_delay_seconds": gettext_lazy(
                "Each further retry waits about twice as long."
            ),
        }

    def __init__(self, *args, preview_url: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Validation writes the posted values into the instance: remember what was saved.
        self.saved = {name: getattr(self.instance, name) for name in self.Meta.fields}
        zone = self.instance.organization.time_zone
        self.fields["schedule_time"].help_text = _("In the organization's time zone, %(zone)s.") % {
            "zone": zone
        }
        cast(forms.CharField, self.fields["schedule_cron"]).max_length = 100
        for name, field in self.fields.items():
            if field.help_text:  # read out with the input, not only seen below it
                field.widget.attrs["aria-describedby"] = f"id_{name}_help"
        # The cron expression's result is read out too: an error or when it runs.
        self.fields["schedule_cron"].widget.attrs["aria-describedby"] += " schedule-preview"
        if preview_url:
            # Typed inputs ask for the preview as you type (S9.3); choices on change.
            for name in ("schedule_time", "schedule_day", "schedule_cron"):
                self.fields[name].widget.attrs |= {
                    "hx-get": preview_url,
                    "hx-trigger": "input changed delay:300ms",
                }

    def clean_schedule_cron(self) -> str:
        expression = self.cleaned_data.get("schedule_cron") or ""
        if self.data.get("schedule") != Integration.Schedule.CUSTOM:
            return ""  # not used: neither checked nor kept
        return schedule.validate_cron(expression)

    def clean(self) -> dict:
        data = super().clean()
        assert data is not None  # a ModelForm's clean() returns cleaned_data
        chosen = data.get("schedule")
        if chosen is None:
            return data
        for name in self.SCHEDULE_FIELDS[1:]:
            if name in self.NEEDS[chosen]:
                if data.get(name) in (None, "") and name not in self.errors:
                    self.add_error(
                        name,
                        _("Choose the %(field)s.")
                        % {"field": str(self.fields[name].label).lower()},
                    )
            else:
                data[name] = "" if name == "schedule_cron" else None
        if not (data.get("include_reimbursements") or data.get("include_honorariums")):
            self.add_error(None, _("Include at least one type of record, or nothing is synced."))
        return data

    def schedule_errors(self) -> list[str]:
        """The errors that stop a schedule from being shown (for the live preview)."""
        return [str(error) for name in self.SCHEDULE_FIELDS for error in self.errors.get(name, [])]

    def changes(self) -> dict[str, dict[str, object]]:
        """What this save changes, as {field: {"from": ..., "to": ...}} for the audit trail."""

        def plain(value: object) -> object:
            return value.strftime("%H:%M") if hasattr(value, "strftime") else value

        return {
            name: {"from": plain(self.saved[name]), "to": plain(self.cleaned_data.get(name))}
            for name in self.Meta.fields
            if plain(self.saved[name]) != plain(self.cleaned_data.get(name))
        }

    def save_for(self, actor) -> Integration:
        """Save, keep the beat task in step, and record who changed what (S9.2)."""
        changes = self.changes()
        with transaction.atomic():
            integration = self.save(commit=False)
            # Only this form's columns: a full save could undo a change made meanwhile
            # on another page (the connector toggled, credentials replaced).
            integration.save(update_fields=[*self.Meta.fields, "updated_at"])
            schedule.sync_periodic_task(integration)
            if changes:
                record_action(
                    actor,
                    integration.organization,
                    TrailKind.SCHEDULE_CHANGED,
                    changes=changes,
                    cron=schedule.cron_for(integration) or "",
                )
        return integration
