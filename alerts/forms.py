"""The alert settings form: which kinds also come by e-mail, and when."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from alerts.models import Alert, AlertPreference


class AlertPreferenceForm(forms.ModelForm):
    email_kinds = forms.MultipleChoiceField(
        label=_("Also by e-mail"),
        choices=Alert.Kind.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
    )

    # The words of each choice say what it means for the mailbox.
    delivery = forms.ChoiceField(
        label=_("When"),
        widget=forms.RadioSelect,
        choices=[
            (
                AlertPreference.Delivery.AT_ONCE,
                _("At once: one e-mail when an alert opens and one when it resolves"),
            ),
            (
                AlertPreference.Delivery.DAILY,
                _(
                    "Once a day: one summary of the alerts opened and resolved in the last "
                    "24 hours, none when there were none"
                ),
            ),
        ],
    )

    class Meta:
        model = AlertPreference
        fields = ["email_kinds", "delivery"]

    def clean_email_kinds(self) -> list[str]:
        # Stored in the order of Alert.Kind, whatever order the browser sent.
        chosen = set(self.cleaned_data["email_kinds"])
        return [kind for kind in Alert.Kind.values if kind in chosen]
