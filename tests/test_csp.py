"""Issue 12 item 8: Content-Security-Policy, Permissions-Policy and Referrer-Policy.

Every page answers with a strict policy (scripts and styles from this origin only, no
'unsafe-inline', no 'unsafe-eval'), and nothing the policy would block is left in the
markup: no inline script or style, no on* handler, no javascript: URL, and no htmx
attribute that htmx would have to evaluate (hx-on, trigger filters, js: values), because
the htmx-config in base.html turns evaluation off. The templates are scanned as written and
every page as rendered (widgets add attributes the templates do not show).
Chromium's own verdict is in tests/test_browser_csp.py.
"""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.template import engines
from django.test import Client
from django.urls import reverse

from tests.test_browser_i18n import PAGES, site  # noqa: F401 (site: a fixture used below)
from tests.test_settings_env import PRODUCTION, manage

BASE_DIR = Path(settings.BASE_DIR)
# htmx evaluates these as JavaScript (allowEval), which base.html's htmx-config forbids.
EVALUATED_HTMX = ("hx-on", "hx-vars", "data-hx-on", "data-hx-vars")
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "data", "xlink:href"}
# <script> blocks the browser does not run: data for scripts, which CSP allows.
DATA_SCRIPT_TYPES = {"application/json", "application/ld+json"}


class InlineCodeFinder(HTMLParser):
    """Collects what a strict CSP (or htmx with allowEval off) would refuse to run."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        where = f"line {self.getpos()[0]} <{tag}>"
        names = {name for name, _value in attrs}
        if tag == "style":
            self.problems.append(f"{where}: an inline <style> block")
        if tag == "script" and "src" not in names:
            kind = (dict(attrs).get("type") or "").strip().lower()
            if kind not in DATA_SCRIPT_TYPES:
                self.problems.append(f"{where}: an inline <script> (give it a src)")
        for name, value in attrs:
            value = (value or "").strip()
            if name.startswith("on"):
                self.problems.append(f"{where}: an inline handler {name}= (use static JS)")
            elif name == "style":
                self.problems.append(f"{where}: a style= attribute (use a class in app.css)")
            elif name.startswith(EVALUATED_HTMX):
                self.problems.append(f"{where}: {name}= needs eval (use a listener in static JS)")
            elif name in ("hx-trigger", "data-hx-trigger") and "[" in value:
                self.problems.append(f"{where}: a trigger filter in {name}= needs eval")
            elif name in ("hx-vals", "data-hx-vals", "hx-headers") and value.startswith("js:"):
                self.problems.append(f"{where}: {name}=js:… needs eval")
            elif name in URL_ATTRIBUTES and re.match(r"\s*javascript:", value, re.IGNORECASE):
                self.problems.append(f"{where}: a javascript: URL in {name}=")


def inline_code(html: str) -> list[str]:
    finder = InlineCodeFinder()
    finder.feed(html)
    finder.close()
    return finder.problems


def without_template_language(source: str) -> str:
    """The markup a template writes, near enough to parse: comments dropped (they may hold
    example markup), tags blanked, variables replaced by a word. Newlines are kept so that
    line numbers still point into the template."""

    def blank(match: re.Match) -> str:
        return "\n" * match.group(0).count("\n")

    source = re.sub(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", blank, source, flags=re.S)
    source = re.sub(r"{#.*?#}", blank, source)
    source = re.sub(r"{%.*?%}", lambda m: " " + blank(m), source, flags=re.S)
    return re.sub(r"{{.*?}}", lambda m: "x" + blank(m), source, flags=re.S)


def project_templates() -> list[Path]:
    """Every template of this project (settings' DIRS and the apps' own folders), not the
    installed packages' (Django's admin, checked rendered below)."""
    venv = BASE_DIR / ".venv"
    folders = [
        Path(folder)
        for folder in engines["django"].template_dirs
        if Path(folder).is_relative_to(BASE_DIR) and not Path(folder).is_relative_to(venv)
    ]
    return sorted({path for folder in folders for path in folder.rglob("*.html")})


# --- the finder itself ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "markup",
    [
        "<script>alert(1)</script>",
        '<script type="module">import "x"</script>',
        "<style>p { color: red }</style>",
        '<button onclick="go()">Go</button>',
        '<body onload="start()">',
        '<p style="color: red">',
        '<a href="javascript:void(0)">x</a>',
        '<form action=" JavaScript:go()">',
        '<button hx-on:click="go()">',
        '<div hx-on::after-request="go()">',
        '<div hx-trigger="every 2s [ready()]">',
        '<div hx-vals="js:{a: go()}">',
        '<div hx-vars="a: go()">',
    ],
)
def test_issue12_item8_the_scan_finds_inline_code(markup: str) -> None:
    assert inline_code(markup), markup


def test_issue12_item8_the_scan_lets_static_scripts_data_and_plain_htmx_through() -> None:
    assert not inline_code(
        '<script src="/static/js/live.js" defer></script>'
        '<script id="data" type="application/json">{"a": 1}</script>'
        '<div hx-get="/x" hx-trigger="every 2s, live-refresh" hx-swap="outerHTML"></div>'
        '<body hx-headers=\'{"X-CSRFToken": "t"}\'><a href="/orgs/">Orgs</a>'
        '<option value="x" selected>'
    )


# --- the templates as written --------------------------------------------------------------


def test_issue12_item8_no_template_has_inline_script_style_or_handlers() -> None:
    templates = project_templates()
    assert BASE_DIR / "templates" / "base.html" in templates  # the scan sees the templates
    found = {
        str(path.relative_to(BASE_DIR)): problems
        for path in templates
        if (problems := inline_code(without_template_language(path.read_text())))
    }
    assert found == {}


def test_issue12_item8_base_html_turns_htmx_evaluation_and_inline_styles_off() -> None:
    source = (BASE_DIR / "templates" / "base.html").read_text()
    found = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", source)
    assert found, "base.html has no htmx-config meta"
    assert json.loads(found.group(1)) == {
        "allowEval": False,
        "allowScriptTags": False,
        "includeIndicatorStyles": False,
    }


# --- the policy ----------------------------------------------------------------------------


def directives(header: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *sources = part.split()
        parsed[name] = sources
    return parsed


STRICT = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "connect-src": ["'self'"],
    "frame-ancestors": ["'none'"],
    "form-action": ["'self'"],
    "base-uri": ["'none'"],
    "object-src": ["'none'"],
}
DENIED_FEATURES = ("camera", "microphone", "geolocation", "payment", "usb")


def assert_strict_headers(response, name: str) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    assert "script-src 'self'" in csp, f"{name}: {csp!r}"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, f"{name}: {csp!r}"
    assert directives(csp) == STRICT, name
    policy = response.headers.get("Permissions-Policy", "")
    for feature in DENIED_FEATURES:
        assert f"{feature}=()" in policy, f"{name}: {policy!r}"
    assert response.headers.get("Referrer-Policy") == "same-origin", name


@pytest.mark.django_db
def test_issue12_item8_every_page_sends_the_strict_policy_and_has_no_inline_code(
    client: Client,
    site,  # noqa: F811 (the fixture)
    global_admin,
    auditor,
) -> None:
    responses = {"login": client.get(reverse("login"))}
    client.force_login(global_admin)
    for name, url in PAGES.items():
        responses[name] = client.get(url(site))
    responses["404"] = client.get("/orgs/no-such-organization/")
    responses["admin"] = client.get(reverse("admin:index"))
    # The start page of someone in two organizations, and a page their role may not open.
    client.force_login(auditor)
    responses["home"] = client.get(reverse("home"))
    responses["403"] = client.get(reverse("api_keys", args=[site["org"].slug]))

    expected = {name: 200 for name in responses} | {"404": 404, "403": 403}
    assert {name: r.status_code for name, r in responses.items()} == expected
    for name, response in responses.items():
        assert_strict_headers(response, name)
    found = {
        name: problems
        for name, response in responses.items()
        if (problems := inline_code(response.content.decode()))
    }
    assert found == {}


@pytest.mark.django_db
def test_issue12_item8_the_live_fragments_and_the_api_send_the_headers_too(
    client: Client,
    site,  # noqa: F811 (the fixture)
    global_admin,
    api_key,
) -> None:
    client.force_login(global_admin)
    slug = site["org"].slug
    for url in (
        reverse("overview_live"),
        reverse("dashboard_live", args=[slug]),
        reverse("failed_records_live", args=[slug]),
        reverse("alert_badge"),
    ):
        response = client.get(url, headers={"HX-Request": "true"})
        assert response.status_code in (200, 204, 286), url
        assert_strict_headers(response, url)
        assert not inline_code(response.content.decode()), url
    response = Client().post(
        reverse("api_records"),
        data="[]",
        content_type="application/json",
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert_strict_headers(response, "api_records")


@pytest.mark.slow  # starts manage.py in its own process
def test_issue12_item8_production_settings_keep_the_policy_and_check_deploy_passes(
    tmp_path,
) -> None:
    # The same policy with DEBUG=false (nothing in it depends on DEBUG), read by a
    # production process; and check --deploy, as tests/test_settings_env.py runs it.
    script = (
        "import json; from django.conf import settings; from csp.utils import build_policy;"
        "from config.security_headers import permissions_policy;"
        "print(json.dumps([settings.DEBUG, build_policy(),"
        " permissions_policy(settings.PERMISSIONS_POLICY), settings.SECURE_REFERRER_POLICY,"
        " settings.MIDDLEWARE]))"
    )
    shown = manage(tmp_path, "shell", "--no-imports", "-c", script, **PRODUCTION)
    assert shown.returncode == 0, shown.stderr
    debug, csp, permissions, referrer, middleware = json.loads(shown.stdout.splitlines()[-1])
    assert debug is False
    assert directives(csp) == STRICT
    assert all(f"{feature}=()" in permissions for feature in DENIED_FEATURES)
    assert referrer == "same-origin"
    assert "csp.middleware.CSPMiddleware" in middleware
    assert "config.security_headers.PermissionsPolicyMiddleware" in middleware

    checked = manage(tmp_path, "check", "--deploy", "--fail-level", "DEBUG", **PRODUCTION)
    assert checked.returncode == 0, checked.stderr
    assert "System check identified no issues (0 silenced)." in checked.stdout


def test_issue12_item8_permissions_policy_header_syntax() -> None:
    from config.security_headers import permissions_policy

    assert permissions_policy({"camera": (), "payment": ("self", "https://pay.example")}) == (
        'camera=(), payment=(self "https://pay.example")'
    )
