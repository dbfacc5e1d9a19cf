"""/healthz, /readyz and /metrics: answered to machines, not people.

They are answered by ops.middleware.ProbeMiddleware before the rest of the middleware runs:
no session is read or written, no login, second factor or idle timeout applies, and a probe
over plain HTTP from inside the network is not redirected to https. The URL patterns in
config/urls.py name the same views, so that they resolve, reverse and stand in the access
matrix like every other URL.
"""

from __future__ import annotations

import hmac
import ipaddress
from http import HTTPStatus

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_safe

from ops import health, metrics


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_safe
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers. Touches nothing else, so a database outage does not
    make the orchestrator restart every web process (that is what /readyz is for)."""
    return _no_store(JsonResponse({"status": "ok", "checked_at": timezone.now().isoformat()}))


@require_safe
def readyz(request: HttpRequest) -> HttpResponse:
    """Readiness: the database and the broker answer, a worker and beat are alive."""
    checks = health.readiness()
    ready = all(check.ok for check in checks)
    body = {
        "status": "ok" if ready else "fail",
        "checked_at": timezone.now().isoformat(),
        "checks": {check.name: check.as_json() for check in checks},
    }
    status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
    response = JsonResponse(body, status=status)
    # Not an error line per poll (every 10 s per load balancer) while a worker is down:
    # the probe's own alerting says so, and the body says which check failed.
    response._has_been_logged = True  # type: ignore[attr-defined]  # read by Django's log_response
    return _no_store(response)


def _bearer(request: HttpRequest) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _from_allowed_network(request: HttpRequest) -> bool:
    """The direct peer only (REMOTE_ADDR), never X-Forwarded-For, which anyone can write."""
    try:
        peer = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(peer in network for network in settings.METRICS_ALLOWED_NETWORKS)


@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    token, networks = settings.METRICS_TOKEN, settings.METRICS_ALLOWED_NETWORKS
    if not token and not networks:
        # Not turned on: as if there were no such page (not Http404, whose DEBUG page
        # would be rendered for a probe that is not even past the Host check).
        return _no_store(HttpResponseNotFound("Not found.\n", content_type="text/plain"))
    bearer = _bearer(request)
    # As bytes: compare_digest refuses a str with non-ASCII characters (a 500, not a 401).
    matches = bool(bearer) and hmac.compare_digest(bearer.encode(), token.encode())
    allowed = (token and matches) or (networks and _from_allowed_network(request))
    if not allowed:
        response = HttpResponse(
            "Not allowed.\n", status=HTTPStatus.UNAUTHORIZED, content_type="text/plain"
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return _no_store(response)
    return _no_store(HttpResponse(metrics.exposition(), content_type=metrics.CONTENT_TYPE))
