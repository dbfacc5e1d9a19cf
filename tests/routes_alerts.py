"""Access matrix entries for the alerts pages (S7.5; joined in tests/test_access_matrix.py).

Everyone signed in has an alerts page and a badge: each sees only the alerts addressed
to them (auditors get none, so an empty page). Marking one read or dismissing it works
only for a person it is addressed to: anyone else gets 404, as for a missing alert.
"""

from __future__ import annotations

from tests.matrix import Route, allowed_for


class AddressedAlertRoute(Route):
    """A route about one alert: an S7.2 alert of the organization, which goes to its
    admins and the global admins, is opened when the URL is asked for."""

    def url(self, slug: str, attempt_id: int) -> str:
        from django.urls import reverse

        from alerts.models import Alert
        from alerts.rules import open_alert
        from organizations.models import Organization

        organization = Organization.objects.get(slug=slug)
        alert = open_alert(
            organization.pk,
            Alert.Kind.MANY_ERRORS,
            {"count": 11, "limit": 10, "error": "Period is closed"},
            global_admins=True,
        )
        assert alert is not None
        return reverse(self.name, kwargs={"alert_id": alert.pk})


EVERYONE_SIGNED_IN = allowed_for(200, 200, 200, other_admin=200)
ADDRESSEES_ONLY = allowed_for(302, 404, 302, other_admin=404)

ROUTES: list[Route] = [
    Route("alert_list", "GET", EVERYONE_SIGNED_IN, note="auditors: an empty list"),
    Route("alert_badge", "GET", EVERYONE_SIGNED_IN, note="the header badge's fragment"),
    # Only one's own settings: the URL names nobody, so there is no one else's to ask for.
    Route("alert_settings", "GET", EVERYONE_SIGNED_IN, note="one's own alert e-mails"),
    Route(
        "alert_settings",
        "POST",
        allowed_for(302, 302, 302, other_admin=302),
        query={"email_kinds": "record_failing", "delivery": "daily"},
        note="saves one's own, then the page again",
    ),
    AddressedAlertRoute("alert_mark_read", "POST", ADDRESSEES_ONLY, note="then the alerts page"),
    AddressedAlertRoute("alert_dismiss", "POST", ADDRESSEES_ONLY, note="then the alerts page"),
]
