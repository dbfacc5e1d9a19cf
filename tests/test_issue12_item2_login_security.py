"""Issue 12 item 2: password guessing is throttled and locked out (django-axes), sessions end
when idle and after a fixed lifetime, and a second factor (django-otp TOTP with recovery
codes) is required of global admins and of the admins of organizations that ask for it."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts import lockout
from audit.models import AdminAction
from core import live
from tests.conftest import PASSWORD, give_second_factor, make_user, totp_code

LOGIN = "/accounts/login/"
ADMIN_LOGIN = "/admin/login/"
ATTACKER = "203.0.113.9"
LOCKED_TEXT = "Logging in is locked."


def attempt(client: Client, username: str, password: str, *, ip: str = ATTACKER, url=LOGIN):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)


def logged_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def code_for(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, step=device.step, t0=device.t0, digits=device.digits):06d}"


# --- throttling and lockout ---------------------------------------------------------------


@pytest.mark.parametrize("url", [LOGIN, ADMIN_LOGIN])
def test_issue12_item2_five_failures_lock_the_user_at_that_address(url, org_admin, global_admin):
    user = global_admin if url == ADMIN_LOGIN else org_admin
    client = Client()
    for _ in range(4):
        assert attempt(client, user.username, "wrong", url=url).status_code == 200
    locked = attempt(client, user.username, "wrong", url=url)
    assert locked.status_code == 429
    assert LOCKED_TEXT in locked.content.decode()

    # The right password is refused while locked, with the message and when it ends.
    refused = attempt(client, user.username, PASSWORD, url=url)
    assert refused.status_code == 429
    page = refused.content.decode()
    assert LOCKED_TEXT in page and "Try again in 15 minutes" in page
    assert 'role="alert"' in page
    assert not logged_in(client)

    # From another address the same user may still try (the per-user limit is 10).
    assert attempt(Client(), user.username, PASSWORD, ip="198.51.100.1", url=url).status_code == 302

    # The lock is in the platform's trail, once, with who and from where.
    entries = AdminAction.objects.filter(kind=AdminAction.Kind.LOGIN_LOCKED)
    assert [(e.detail["username"], e.detail["ip_address"]) for e in entries] == [
        (user.username, ATTACKER)
    ]
    assert entries[0].organization is None and entries[0].detail["via"] == url


def test_issue12_item2_ten_failures_from_many_addresses_lock_the_user(org_admin):
    for n in range(10):
        attempt(Client(), org_admin.username, "wrong", ip=f"198.51.100.{n + 1}")
    refused = attempt(Client(), org_admin.username, PASSWORD, ip="192.0.2.77")
    assert refused.status_code == 429 and LOCKED_TEXT in refused.content.decode()
    assert [lock.scope for lock in lockout.current_locks()] == [lockout.USER]


def test_issue12_item2_twenty_failures_from_one_address_lock_the_address(org_admin, auditor):
    for n in range(20):
        attempt(Client(), f"guess-{n}", "wrong")  # four tries at most per name: no user lock
    refused = attempt(Client(), auditor.username, PASSWORD)
    assert refused.status_code == 429
    # Someone else, elsewhere, logs in as usual.
    assert attempt(Client(), org_admin.username, PASSWORD, ip="192.0.2.10").status_code == 302


def test_issue12_item2_forwarded_for_is_ignored_unless_behind_the_proxy(settings, org_admin):
    from django.test import RequestFactory

    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4")
    settings.BEHIND_TLS_PROXY = False
    assert lockout.client_ip(request) == "10.0.0.2"
    settings.BEHIND_TLS_PROXY = True
    # Only the entry the proxy appended (the last) counts; what the client sent before not.
    request.META["HTTP_X_FORWARDED_FOR"] = "6.6.6.6, 198.51.100.20"
    assert lockout.client_ip(request) == "198.51.100.20"
    request.META["HTTP_X_FORWARDED_FOR"] = "not-an-address"
    assert lockout.client_ip(request) == "10.0.0.2"

    # Without the setting, a new X-Forwarded-For with every guess does not escape the lock.
    settings.BEHIND_TLS_PROXY = False
    for n in range(5):
        attempt(Client(HTTP_X_FORWARDED_FOR=f"7.7.7.{n}"), org_admin.username, "wrong")
    assert attempt(Client(), org_admin.username, PASSWORD).status_code == 429


def test_issue12_item2_a_global_admin_unlocks_and_the_trail_says_who(org_admin, global_admin):
    for _ in range(5):
        attempt(Client(), org_admin.username, "wrong")
    admin = Client()
    admin.force_login(global_admin)
    page = admin.get(reverse("lockouts"))
    assert page.status_code == 200
    assert org_admin.username in page.content.decode() and ATTACKER in page.content.decode()
    # Reachable from the header for global admins.
    assert reverse("lockouts") in admin.get(reverse("overview")).content.decode()

    unlocked = admin.post(
        reverse("lockout_unlock"),
        {"scope": lockout.PAIR, "username": org_admin.username, "ip_address": ATTACKER},
    )
    assert unlocked.status_code == 302
    assert lockout.current_locks() == []
    entry = AdminAction.objects.get(kind=AdminAction.Kind.LOGIN_UNLOCKED)
    assert entry.actor_username == global_admin.username
    assert entry.detail == {
        "scope": lockout.PAIR,
        "username": org_admin.username,
        "ip_address": ATTACKER,
    }
    assert attempt(Client(), org_admin.username, PASSWORD).status_code == 302


def test_issue12_item2_the_lock_ends_after_the_cool_off(org_admin):
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        for _ in range(5):
            attempt(Client(), org_admin.username, "wrong")
        assert attempt(Client(), org_admin.username, PASSWORD).status_code == 429
    with time_machine.travel(start + timedelta(minutes=16), tick=False):
        assert attempt(Client(), org_admin.username, PASSWORD).status_code == 302


def test_issue12_item2_the_lock_message_is_in_norwegian_too(org_admin):
    client = Client(HTTP_ACCEPT_LANGUAGE="nb")
    for _ in range(5):
        attempt(client, org_admin.username, "wrong")
    page = attempt(client, org_admin.username, PASSWORD)
    assert page.status_code == 429
    assert '<html lang="nb">' in page.content.decode()


# --- session lifetime -----------------------------------------------------------------------


def test_issue12_item2_an_idle_session_is_logged_out(org, org_admin):
    client = Client()
    start = timezone.now()
    home = reverse("organization_home", args=[org.slug])
    with time_machine.travel(start, tick=False):
        client.force_login(org_admin)
        assert client.get(home).status_code == 200
    with time_machine.travel(start + timedelta(minutes=31), tick=False):
        response = client.get(home)
        assert response.status_code == 302 and response["Location"].startswith(LOGIN)
        assert not logged_in(client)
        follow = client.get(response["Location"])
        assert "without activity" in follow.content.decode()


def test_issue12_item2_a_poll_does_not_extend_the_session_but_a_page_view_does(org, org_admin):
    client = Client()
    start = timezone.now()
    home = reverse("organization_home", args=[org.slug])
    poll = reverse("dashboard_live", args=[org.slug])
    with time_machine.travel(start, tick=False):
        client.force_login(org_admin)
        client.get(home)
    # A page view at 20 minutes renews: at 45 minutes (25 idle) the session still holds.
    with time_machine.travel(start + timedelta(minutes=20), tick=False):
        assert client.get(home).status_code == 200
    with time_machine.travel(start + timedelta(minutes=45), tick=False):
        assert client.get(poll, HTTP_HX_REQUEST="true").status_code in (200, 204, 286)
    # Only polls since: 31 minutes after the last page view the poll itself is sent away.
    with time_machine.travel(start + timedelta(minutes=51), tick=False):
        response = client.get(poll, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=home)
        assert response.status_code == 200 and response["HX-Redirect"].startswith(LOGIN)
        assert not logged_in(client)


def test_issue12_item2_every_live_fragment_is_marked_as_a_poll(org):
    from django.urls import resolve

    for name, args in [
        ("dashboard_live", [org.slug]),
        ("overview_live", []),
        ("failed_records_live", [org.slug]),
        ("audit_chain_badge", [org.slug]),
        ("alert_badge", []),
        ("integration_connection", [org.slug]),
    ]:
        assert live.is_poll(resolve(reverse(name, args=args)).func), name
    assert not live.is_poll(resolve(reverse("organization_home", args=[org.slug])).func)


def test_issue12_item2_a_session_ends_twelve_hours_after_login_however_active(
    settings, org, org_admin
):
    settings.SESSION_IDLE_SECONDS = 24 * 3600  # only the absolute lifetime is tested here
    client = Client()
    start = timezone.now()
    home = reverse("organization_home", args=[org.slug])
    with time_machine.travel(start, tick=False):
        client.force_login(org_admin)
    with time_machine.travel(start + timedelta(hours=11, minutes=50), tick=False):
        assert client.get(home).status_code == 200
    with time_machine.travel(start + timedelta(hours=12, minutes=1), tick=False):
        assert client.get(home).status_code == 302


# --- the second factor ----------------------------------------------------------------------


def test_issue12_item2_a_global_admin_without_an_app_must_set_one_up(db, org):
    boss = make_user("new-boss", superuser=True)
    client = Client()
    client.force_login(boss)
    for url in (reverse("overview"), reverse("organization_home", args=[org.slug]), "/admin/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("two_factor")), url
    page = client.get(reverse("two_factor"))
    assert page.status_code == 200
    content = page.content.decode()
    # The QR code is inline SVG: no image file, no script of its own (a strict CSP is on).
    main = content[content.index("<main") :]
    assert "<svg" in main and "<img" not in main and "<script" not in main
    device = TOTPDevice.objects.get(user=boss, confirmed=False)
    assert (
        page.context["secret"].replace(" ", "")
        in __import__("base64").b32encode(device.bin_key).decode()
    )
    # Logging out stays possible.
    assert client.post(reverse("logout")).status_code == 302


def test_issue12_item2_enrolment_with_a_valid_code_turns_it_on(db):
    boss = make_user("new-boss", superuser=True)
    client = Client()
    client.force_login(boss)
    client.get(reverse("two_factor"))
    device = TOTPDevice.objects.get(user=boss, confirmed=False)

    response = client.post(reverse("two_factor"), {"code": code_for(device)})
    assert response["Location"] == reverse("two_factor_recovery_codes")
    codes_page = client.get(response["Location"])
    codes = codes_page.context["codes"]
    assert len(codes) == 10 and all(code in codes_page.content.decode() for code in codes)
    # Shown once.
    assert client.get(reverse("two_factor_recovery_codes")).status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    # This session passed the factor: the site is open.
    assert client.get(reverse("overview")).status_code == 200
    assert AdminAction.objects.filter(kind=AdminAction.Kind.TWO_FACTOR_ENABLED, actor=boss).exists()


def test_issue12_item2_enrolment_with_a_wrong_code_is_refused(db):
    boss = make_user("new-boss", superuser=True)
    client = Client()
    client.force_login(boss)
    client.get(reverse("two_factor"))
    device = TOTPDevice.objects.get(user=boss, confirmed=False)
    wrong = f"{(int(code_for(device)) + 1) % 1_000_000:06d}"
    page = client.post(reverse("two_factor"), {"code": wrong})
    assert page.status_code == 200
    content = page.content.decode()
    assert 'role="alert"' in content and 'aria-invalid="true"' in content
    device.refresh_from_db()
    assert not device.confirmed
    assert client.get(reverse("overview")).status_code == 302


def password_login(client: Client, user) -> None:
    response = attempt(client, user.username, PASSWORD, ip="192.0.2.50")
    assert response.status_code == 302


def test_issue12_item2_login_second_step_takes_a_totp_code(global_admin):
    client = Client()
    password_login(client, global_admin)
    for url in (reverse("overview"), "/admin/"):
        response = client.get(url)
        assert response["Location"].startswith(reverse("two_factor_verify")), url
    assert client.get(reverse("two_factor_verify")).status_code == 200

    response = client.post(
        reverse("two_factor_verify"), {"code": totp_code(global_admin), "next": "/admin/"}
    )
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get(reverse("overview")).status_code == 200


def test_issue12_item2_a_recovery_code_works_once_only(global_admin):
    client = Client()
    client.force_login(global_admin)
    client.post(reverse("two_factor_recovery_codes"))
    code = client.get(reverse("two_factor_recovery_codes")).context["codes"][0]
    assert AdminAction.objects.filter(kind=AdminAction.Kind.RECOVERY_CODES_RENEWED).exists()

    first = Client()
    password_login(first, global_admin)
    # Typed as people do: in capitals, with a space.
    spaced = f"{code[:5].upper()} {code[5:].upper()}"
    assert first.post(reverse("two_factor_verify"), {"code": spaced}).status_code == 302
    assert first.get(reverse("overview")).status_code == 200
    assert not StaticToken.objects.filter(token=code).exists()

    second = Client()
    password_login(second, global_admin)
    refused = second.post(reverse("two_factor_verify"), {"code": code})
    assert refused.status_code == 200 and "not right" in refused.content.decode()
    assert second.get(reverse("overview")).status_code == 302


def wrong_code(user) -> str:
    """A code the user's app cannot show now: none of the steps the device accepts."""
    device = TOTPDevice.objects.get(user=user, confirmed=True)
    # Shifting t0 by whole steps gives the codes of the neighbouring steps, a margin
    # wider than the device's tolerance, so a step boundary during the test changes nothing.
    accepted = {
        totp(device.bin_key, step=device.step, t0=device.t0 - drift * device.step)
        for drift in range(-device.tolerance - 1, device.tolerance + 2)
    }
    return f"{next(n for n in range(10**6) if n not in accepted):06d}"


def test_issue12_item2_a_wrong_code_at_login_is_refused(global_admin):
    client = Client()
    password_login(client, global_admin)
    page = client.post(reverse("two_factor_verify"), {"code": wrong_code(global_admin)})
    assert 'role="alert"' in page.content.decode()
    assert client.get(reverse("overview")).status_code == 302
    # The next try within the throttle's wait is not even checked.
    again = client.post(reverse("two_factor_verify"), {"code": totp_code(global_admin)})
    assert "Wait a few seconds" in again.content.decode()


def test_issue12_item2_an_organization_can_require_it_of_its_admins_not_its_auditors(
    org, org_admin, auditor
):
    org.require_two_factor = True
    org.save()
    home = reverse("organization_home", args=[org.slug])

    admin_client = Client()
    admin_client.force_login(org_admin)
    assert admin_client.get(home)["Location"].startswith(reverse("two_factor"))

    auditor_client = Client()
    auditor_client.force_login(auditor)
    assert auditor_client.get(home).status_code == 200


def test_issue12_item2_the_requirement_is_set_in_django_admin_and_recorded(org, global_admin):
    client = Client()
    client.force_login(global_admin)
    url = reverse("admin:organizations_organization_change", args=[org.pk])
    form = client.get(url).context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(
        {
            "require_two_factor": "on",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        }
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.content[:500]
    org.refresh_from_db()
    assert org.require_two_factor
    entry = AdminAction.objects.get(kind=AdminAction.Kind.TWO_FACTOR_REQUIRED)
    assert entry.organization == org and entry.detail["required"] is True


def test_issue12_item2_turning_it_off_takes_a_code(db, org, org_admin):
    give_second_factor(org_admin)
    client = Client()
    client.force_login(org_admin)
    refused = client.post(reverse("two_factor_disable"), {"code": "12"})
    assert refused.status_code == 400 and 'role="alert"' in refused.content.decode()
    assert TOTPDevice.objects.filter(user=org_admin).exists()

    with time_machine.travel(timezone.now() + timedelta(seconds=5)):  # past the throttle
        done = client.post(reverse("two_factor_disable"), {"code": totp_code(org_admin)})
    assert done.status_code == 302
    assert not TOTPDevice.objects.filter(user=org_admin).exists()
    assert AdminAction.objects.filter(kind=AdminAction.Kind.TWO_FACTOR_DISABLED).exists()
    # Not required of this admin: the site stays open without it.
    home = reverse("organization_home", args=[org.slug])
    assert client.get(home).status_code == 200


def test_issue12_item2_an_app_set_up_voluntarily_is_asked_for_at_login(org, org_admin):
    give_second_factor(org_admin)
    client = Client()
    password_login(client, org_admin)
    home = reverse("organization_home", args=[org.slug])
    assert client.get(home)["Location"].startswith(reverse("two_factor_verify"))


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["half an hour", "30"])
def test_issue12_item2_a_malformed_idle_timeout_stops_start_up(tmp_path, value) -> None:
    from tests.test_settings_env import manage

    result = manage(tmp_path, "check", DEBUG="true", SESSION_IDLE_SECONDS=value)
    assert result.returncode != 0
    assert "Environment variable SESSION_IDLE_SECONDS:" in result.stderr


def test_issue12_item2_the_idle_timeout_is_read_from_the_environment(tmp_path) -> None:
    from tests.test_settings_env import manage

    show = "from django.conf import settings; print(settings.SESSION_IDLE_SECONDS)"
    result = manage(tmp_path, "shell", "-c", show, DEBUG="true", SESSION_IDLE_SECONDS="900")
    assert result.stdout.strip().splitlines()[-1] == "900", result.stderr
