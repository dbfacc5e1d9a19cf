"""The forms of the second factor: one field each, a code."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _
from django_otp.models import Device
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import two_factor

WRONG_CODE = _("That code is not right. Check the app (or the recovery code) and try again.")
WAIT = _("Too many wrong codes. Wait a few seconds and try again.")


class CodeField(forms.CharField):
    def __init__(self, *, label, help_text="", numeric: bool = False) -> None:
        attrs = {"autocomplete": "one-time-code", "spellcheck": "false", "autocapitalize": "off"}
        if numeric:
            attrs["inputmode"] = "numeric"
        super().__init__(
            label=label,
            help_text=help_text,
            max_length=32,
            strip=True,
            widget=forms.TextInput(attrs=attrs),
        )


class ConfirmAppForm(forms.Form):
    """Enrolment: the first code the new app shows."""

    code = CodeField(label=_("Code from the app"), help_text=_("Six digits."), numeric=True)

    def __init__(self, device: TOTPDevice, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.device = device

    def clean_code(self) -> str:
        code = two_factor.normalise(self.cleaned_data["code"])
        # Asked first: after a wrong code the device makes the next one wait.
        if not self.device.verify_is_allowed()[0]:
            raise forms.ValidationError(WAIT)
        if not two_factor.confirm(self.device, code):
            raise forms.ValidationError(WRONG_CODE)
        return code


class VerifyForm(forms.Form):
    """A code from the app or a recovery code: the login's second step, and turning it off."""

    code = CodeField(
        label=_("Authentication code"),
        help_text=_("The six digits the app shows now, or one of your recovery codes."),
    )

    def __init__(self, user, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.device: Device | None = None

    def clean_code(self) -> str:
        code = self.cleaned_data["code"]
        # Asked first: after a wrong code the device makes the next one wait.
        if two_factor.throttled(self.user, code):
            raise forms.ValidationError(WAIT)
        self.device = two_factor.verify(self.user, code)
        if self.device is None:
            raise forms.ValidationError(WRONG_CODE)
        return code
