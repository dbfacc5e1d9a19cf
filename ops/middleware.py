"""The two middlewares that come first (config/settings.py MIDDLEWARE)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from core import logcontext
from ops import views

# Path → view; the same views and paths as in config/urls.py (tests/test_ops.py checks).
PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": views.healthz,
    "/readyz": views.readyz,
    "/metrics": views.metrics_view,
}
# A request id the proxy sent along is kept, so its log lines and ours join; anything else
# (too long, odd characters that could forge a log field) is replaced by our own.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,100}")
REQUEST_ID_HEADER = "X-Request-ID"


class RequestContextMiddleware:
    """Every log line written while a request is handled names its request id, and the
    organization when the URL names one (core/logcontext.py); the response carries the id."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = incoming if REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex
        logcontext.start(request_id=request_id)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = request_id
        # Kept until the server closes the response: Django logs a 4xx or 5xx answer after
        # the middleware has returned it, and that line should name the request too.
        response._resource_closers.append(logcontext.clear)  # type: ignore[attr-defined]
        return response

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        slug = view_kwargs.get("slug")
        if isinstance(slug, str):
            logcontext.bind(organization=slug)
        return None


class ProbeMiddleware:
    """Answers GET /healthz, /readyz and /metrics before any other middleware: no session,
    no login or second factor, no idle timeout, no https redirect (a load balancer probes
    over plain HTTP from inside), and no Host check (it may probe by address; the answers
    name no host). Any other method falls through to the views, which refuse it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe(request)
        return self.get_response(request)
