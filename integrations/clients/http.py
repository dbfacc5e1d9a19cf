"""HTTP plumbing shared by the ERP connectors.

One pooled session per connector, explicit timeouts on every call, and ONE place
that decides what a failed write means (`classify_failure`): whether the ERP can
have done it (UNCERTAIN: look it up before sending again), certainly did not
(TRANSIENT / RATE_LIMITED: send again later), refused the caller (AUTHENTICATION)
or refused the content (PERMANENT). See docs/architecture.md, "Exactly once".

Nothing here ever puts a header or a form body into a message or a log line:
those are where credentials travel.
"""

from __future__ import annotations

import enum
import logging
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.client import RemoteDisconnected
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import (
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
)
from urllib3.exceptions import (
    SSLError as Urllib3SSLError,
)

from core import events
from integrations.notes import Note, NoteCode, note

from .base import ConnectorError, Outcome, PostResult, truncate
from .limits import LimitReached, Pacer

logger = logging.getLogger(__name__)

USER_AGENT = "voluntary-ledger/0.1 (accounting-sync)"

# How many connections each session keeps open per host. A connector sends one
# call at a time; a few spare connections cover MSAL's token calls beside it.
POOL_SIZE = 4


class _TimeoutAdapter(HTTPAdapter):
    """An adapter that applies default timeouts when the caller gives none.

    Our own calls always pass a timeout; MSAL and requests-oauthlib call the
    session without one, and a call without a timeout can hang a worker forever.
    """

    def __init__(self, timeout: tuple[float, float], **kwargs: Any) -> None:
        self._default_timeout = timeout
        super().__init__(**kwargs)

    def send(self, request, timeout=None, **kwargs):  # type: ignore[override]
        return super().send(request, timeout=timeout or self._default_timeout, **kwargs)


class _GuardedAdapter(_TimeoutAdapter):
    """The one gate every ERP request passes: allow-list before sending, no redirects after.

    Every request of a session made here goes through `send`: our own calls, MSAL's
    discovery and token calls, requests-oauthlib's token call, every
    `@odata.nextLink`, and any redirect requests would follow. So the check holds
    on every request, not only when an address is saved, and no caller can skip it.
    """

    def __init__(
        self,
        timeout: tuple[float, float],
        allowed: AllowList,
        pacer: Pacer | None = None,
        **kwargs: Any,
    ) -> None:
        self._allowed = allowed
        self._pacer = pacer
        super().__init__(timeout, **kwargs)

    def send(self, request, timeout=None, **kwargs):  # type: ignore[override]
        problem = self._allowed.problem(request.url)
        if problem:
            # Refused before a byte is sent: no header (credentials) leaves the server.
            raise AddressRefused(_not_allowed_failure(request.url, problem), request=request)
        if self._pacer is not None:
            self._pace(request)
        response = super().send(request, timeout=timeout, **kwargs)
        if 300 <= response.status_code < 400:
            # Never followed and never read: the answer of a host we were sent to by
            # mistake must not end up in sync logs that admins and auditors read.
            status, location = response.status_code, response.headers.get("Location", "")
            response.close()
            raise AddressRefused(_redirect_failure(request.url, status, location), request=request)
        return response

    def _pace(self, request: requests.PreparedRequest) -> None:
        """Wait for a slot in the credential's shared window (limits.py)."""
        assert self._pacer is not None
        try:
            waited = self._pacer.before_request()
        except LimitReached as full:
            events.erp_paced.send(sender=Pacer, seconds=0.0, refused=True)
            raise AddressRefused(_paced_failure(full.wait), request=request) from None
        except Exception as problem:
            # The ERP enforces its limit itself and a 429 is handled like any answer:
            # pacing is a courtesy, not a reason to stop sending.
            logger.warning(
                "ERP request sent unpaced: the rate limiter failed (%s: %s)",
                type(problem).__name__,
                problem,
            )
        else:
            if waited > 0:
                events.erp_paced.send(sender=Pacer, seconds=waited, refused=False)


def make_session(
    ca_bundle: str | bool = True,
    *,
    allowed: AllowList,
    connect_timeout: float = 5,
    read_timeout: float = 60,
    pacer: Pacer | None = None,
) -> requests.Session:
    """A pooled session that verifies TLS against `ca_bundle` (a path, or True for certifi)
    and sends only to `allowed` addresses, each request paced by `pacer` when given."""
    return configure_session(
        requests.Session(),
        ca_bundle,
        allowed=allowed,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        pacer=pacer,
    )


def configure_session(
    session: requests.Session,
    ca_bundle: str | bool = True,
    *,
    allowed: AllowList,
    connect_timeout: float = 5,
    read_timeout: float = 60,
    pacer: Pacer | None = None,
) -> requests.Session:
    """Give `session` (also a requests-oauthlib OAuth2Session) our gate, pool, trust and timeouts.

    `max_retries=0`: urllib3 must never resend a request on its own. A POST that
    is silently resent after the connection dropped is exactly how a ledger gets
    a duplicate; retries are the sync engine's decision, after a lookup.
    """
    adapter = _GuardedAdapter(
        (connect_timeout, read_timeout),
        allowed,
        pacer,
        pool_connections=POOL_SIZE,
        pool_maxsize=POOL_SIZE,
        max_retries=0,
    )
    # Both schemes go to the gate, which refuses plain http: an adapter mounted for
    # https only would let requests answer "no adapter" for http, a less clear refusal.
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # The gate raises on any 3xx before requests could follow it; this is the second lock.
    session.max_redirects = 0
    # The gate sees the request as requests prepared it, which drops a port 0 (and so
    # would send to 443): the address as the caller wrote it is checked first, too.
    session.request = _checked_before_preparing(session.request, allowed)  # type: ignore[method-assign]
    session.verify = ca_bundle
    # Not the environment's settings: REQUESTS_CA_BUNDLE would replace `verify`
    # (requests applies it over a session's own), ~/.netrc could replace our
    # Authorization header, and proxies from the environment could route ERP
    # traffic (and credentials) somewhere the allow-list never saw.
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    session.headers["Accept"] = "application/json"
    return session


def _checked_before_preparing(
    request: Callable[..., requests.Response], allowed: AllowList
) -> Callable[..., requests.Response]:
    def checked_request(method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        problem = allowed.problem(str(url))
        if problem:
            raise AddressRefused(_not_allowed_failure(str(url), problem))
        return request(method, url, *args, **kwargs)

    return checked_request


# --- the allow-list -----------------------------------------------------------------------------

HTTPS_PORT = 443
# `host:*` (the sandbox in development and tests, which listens on 8443 or on a random
# port) still never reaches a system service: 443 or an unprivileged port only.
FIRST_UNPRIVILEGED_PORT = 1024
MAX_PORT = 65535
ANY_PORT = -1


class Refusal(enum.StrEnum):
    """Why an address may not be contacted (the settings form words each one)."""

    SCHEME = "scheme"  # not https
    USERINFO = "userinfo"  # a user name or password in the address
    HOST = "host"  # not on the allow-list
    PORT = "port"  # not a port the allow-list entry permits (or not a port at all)


@dataclass(frozen=True)
class AllowList:
    """The ERP addresses the server may contact: https, an allowed host, an allowed port.

    Entries are `host` (port 443 only), `host:port` (that port only) or `host:*`
    (443 or any port from 1024 up: meant for `localhost` with DEBUG, where the ERP
    sandbox listens on 8443 or, in tests, on a random port).
    """

    entries: frozenset[tuple[str, int]]

    @classmethod
    def parse(cls, names: Iterable[str]) -> AllowList:
        """From ERP_ALLOWED_HOSTS; raises ValueError for an entry that is not host[:port|:*]."""
        return cls(frozenset(_entry(name) for name in names if name.strip()))

    @classmethod
    def of_urls(cls, *urls: str) -> AllowList:
        """Exactly the origins of these addresses (a connector built without a list)."""
        entries = set()
        for url in urls:
            parts = urlsplit(url)
            try:
                port = parts.port or HTTPS_PORT
            except ValueError:
                continue  # not an address at all: it allows nothing
            if parts.scheme == "https" and parts.hostname:
                entries.add((parts.hostname.lower(), port))
        return cls(frozenset(entries))

    def problem(self, url: str) -> Refusal | None:
        """Why `url` may not be contacted, or None when it may."""
        parts = urlsplit(url)
        if parts.scheme != "https":
            return Refusal.SCHEME
        if parts.username or parts.password:
            return Refusal.USERINFO
        host = (parts.hostname or "").lower()
        if not host or not any(entry_host == host for entry_host, _port in self.entries):
            return Refusal.HOST
        port = port_of(url)
        if port is None or not self._port_allowed(host, port):
            return Refusal.PORT
        return None

    def _port_allowed(self, host: str, port: int) -> bool:
        if (host, port) in self.entries:
            return True
        wildcard = (host, ANY_PORT) in self.entries
        return wildcard and (port == HTTPS_PORT or FIRST_UNPRIVILEGED_PORT <= port <= MAX_PORT)


def port_of(url: str) -> int | None:
    """The port an https address connects to, or None when it names no usable port (0, 99999)."""
    try:
        port = urlsplit(url).port
    except ValueError:  # out of range or not a number
        return None
    if port is None:
        return HTTPS_PORT
    return port if 1 <= port <= MAX_PORT else None


def _entry(name: str) -> tuple[str, int]:
    host, colon, port = name.strip().lower().rpartition(":")
    if not colon:
        return port, HTTPS_PORT  # no port named: rpartition put the host last
    if port == "*":
        return host, ANY_PORT
    if not port.isdigit() or not 1 <= int(port) <= MAX_PORT or not host:
        raise ValueError(f"ERP_ALLOWED_HOSTS entry {name!r} is not host, host:port or host:*")
    return host, int(port)


class AddressRefused(requests.RequestException):
    """An ERP request refused by the gate: an address not allowed, or a redirect answer."""

    def __init__(self, failure: Failure, **kwargs: Any) -> None:
        super().__init__(failure.message, **kwargs)
        self.failure = failure


def _origin(url: str) -> str:
    """The address as an admin typed it, shortened: scheme, host and an unusual port."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    try:
        port = parts.port
    except ValueError:
        port = None
    shown = f"{host}:{port}" if port and port != HTTPS_PORT else host
    return shown if parts.scheme == "https" else f"{parts.scheme or 'http'}://{shown}"


def _not_allowed_failure(url: str, problem: Refusal) -> Failure:
    # A configuration error, nothing was sent: AUTHENTICATION stops the run and raises
    # an alert at once, and no record burns a retry on an address that cannot work.
    said = note(NoteCode.ADDRESS_NOT_ALLOWED, origin=_origin(url), refusal=problem.value)
    return Failure(Outcome.AUTHENTICATION, Cause.NOT_ALLOWED, "", note=said)


def _paced_failure(wait: float) -> Failure:
    return Failure(Outcome.RATE_LIMITED, Cause.PACED, "", retry_after=wait)


def _redirect_failure(url: str, status: int, location: str) -> Failure:
    """A 3xx answer, never followed.

    Why a refusal and not UNCERTAIN: Xledger's GraphQL endpoint and Business Central's
    OData API never answer an API call with a redirect. A 3xx comes from something in
    front of the API (a moved or mistyped address, an http-to-https rewrite, a proxy's
    sign-in page), so the request did not reach the API and nothing was carried out.
    Every other record would get the same answer, so it is a configuration error like
    refused credentials (AUTHENTICATION): the run stops, records stay pending without
    burning retries, an admin fixes the address. (The one 3xx that may follow a
    processed POST, 303 See Other after a web form, is not something these APIs send.)
    """
    if location:
        said = note(NoteCode.REDIRECTED_TO, origin=_origin(urljoin(url, location)))
    else:
        said = note(NoteCode.REDIRECTED, status=status)
    return Failure(Outcome.AUTHENTICATION, Cause.REDIRECT, "", None, status, note=said)


def host_of(url: str) -> str:
    return urlsplit(url).hostname or url


# --- classifying failures -------------------------------------------------------------------


class Cause(enum.StrEnum):
    """What kind of failure it was, for the admin's message."""

    UNKNOWN_HOST = "unknown_host"
    REFUSED = "refused"
    CONNECT_TIMEOUT = "connect_timeout"
    CERTIFICATE = "certificate"
    TLS = "tls"
    READ_TIMEOUT = "read_timeout"
    DROPPED = "dropped"
    BAD_ADDRESS = "bad_address"
    NOT_ALLOWED = "not_allowed"  # refused by the allow-list before sending
    PACED = "paced"  # held back by our own pacing (limits.py) before sending
    REDIRECT = "redirect"  # a 3xx answer, never followed
    HTTP = "http"
    OTHER = "other"


@dataclass(frozen=True)
class Failure:
    """A classified failure of one HTTP call."""

    outcome: Outcome
    cause: Cause
    message: str  # the ERP's own words, "HTTP <status>" when it gave none, "" without an answer
    retry_after: float | None = None
    status: int | None = None
    body: str = ""  # the answer's body, truncated
    # Our words for it, when the connector knows better ones than the cause's (notes.py).
    note: Note | None = None

    @property
    def said(self) -> Note | None:
        """What we say about it: the connector's note, else the cause's (none for a status:
        the page explains a status code itself)."""
        if self.note is not None or self.cause is Cause.HTTP:
            return self.note
        if self.cause is Cause.PACED:
            return note(NoteCode.PACED, seconds=f"{self.retry_after or 0:.0f}")
        return note(NoteCode(self.cause.value))


class CallFailed(Exception):
    """Raised inside a connector when a call failed; carries the classification."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:  # HTTP dates are GMT; a zone-less one is taken as such
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0.0, seconds)


def _chain(error: BaseException) -> Iterable[BaseException]:
    """The exception and everything it wraps (requests wraps urllib3 wraps socket errors)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError (or a string)
        linked = [current.__cause__, current.__context__, reason, *current.args]
        stack.extend(e for e in linked if isinstance(e, BaseException))


# Raised by requests before anything is sent: the configured address is unusable.
_BAD_ADDRESS_ERRORS = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.URLRequired,
)


def _cause_of(error: BaseException) -> Cause:
    """Which network failure `error` is, most specific first.

    Order matters: requests' ConnectTimeout is also a ConnectionError and a
    Timeout, and its SSLError is also a ConnectionError.
    """
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return Cause.CONNECT_TIMEOUT
    if isinstance(error, _BAD_ADDRESS_ERRORS):
        return Cause.BAD_ADDRESS
    if isinstance(error, requests.exceptions.ReadTimeout):
        return Cause.READ_TIMEOUT
    chain = list(_chain(error))
    if isinstance(error, requests.exceptions.SSLError) or any(
        isinstance(e, ssl.SSLError | Urllib3SSLError) for e in chain
    ):
        return _tls_cause(chain)
    if any(isinstance(e, NameResolutionError) for e in chain):
        return Cause.UNKNOWN_HOST
    # Dropped after sending: checked before NewConnectionError because a reset
    # on an established connection is also an OSError.
    if any(isinstance(e, ProtocolError | RemoteDisconnected) for e in chain):
        return Cause.DROPPED
    if any(isinstance(e, NewConnectionError | ConnectionRefusedError) for e in chain):
        return Cause.REFUSED
    if any(isinstance(e, ConnectionResetError | BrokenPipeError) for e in chain):
        return Cause.DROPPED
    if isinstance(error, requests.exceptions.ConnectionError):
        return Cause.DROPPED
    return Cause.OTHER


# Words in OpenSSL's errors that only a handshake produces. Any other TLS error
# (an EOF, a bad record) may come after the request was sent.
_HANDSHAKE_MARKERS = (
    "HANDSHAKE",
    "WRONG_VERSION_NUMBER",
    "UNSUPPORTED_PROTOCOL",
    "NO_PROTOCOLS_AVAILABLE",
    "PROTOCOL_VERSION",
    "NO_SHARED_CIPHER",
    "UNKNOWN_CA",
)


def _tls_cause(chain: list[BaseException]) -> Cause:
    """A TLS failure: before sending (handshake, certificate) or possibly after.

    urllib3 reports a TLS error while reading the answer (an EOF without
    close_notify) with the same SSLError as a failed handshake; only the
    handshake's own errors prove that nothing was sent.
    """
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain):
        return Cause.CERTIFICATE
    text = " ".join(str(e) for e in chain).upper()
    if "CERTIFICATE_VERIFY_FAILED" in text:
        return Cause.CERTIFICATE
    if any(marker in text for marker in _HANDSHAKE_MARKERS):
        return Cause.TLS
    return Cause.DROPPED


# Network failures where nothing reached the ERP: sending again is safe.
_NOT_SENT = {
    Cause.UNKNOWN_HOST,
    Cause.REFUSED,
    Cause.CONNECT_TIMEOUT,
    Cause.CERTIFICATE,
    Cause.TLS,
    Cause.BAD_ADDRESS,
}


def classify_failure(
    error: BaseException | None = None,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    erp_message: str = "",
    body: str = "",
    write: bool = True,
) -> Failure:
    """What a failed call means: a requests exception, or an HTTP status with its headers.

    `write=False` (reads, lookups, token calls) turns UNCERTAIN into TRANSIENT:
    a read that may or may not have happened is simply read again.
    """
    if isinstance(error, AddressRefused):
        # The gate already knows what it refused and why; a read or a write alike.
        return error.failure
    if isinstance(error, requests.HTTPError) and error.response is not None:
        # raise_for_status() inside a library (MSAL's discovery): classify the status.
        response = error.response
        failure = _classify_status(
            response.status_code, response.headers, "", truncate(response.text)
        )
    elif error is not None:
        failure = _classify_exception(error)
    else:
        failure = _classify_status(status or 0, headers or {}, erp_message, truncate(body))
    if not write and failure.outcome is Outcome.UNCERTAIN:
        failure = replace(failure, outcome=Outcome.TRANSIENT)
    return failure


def _classify_exception(error: BaseException) -> Failure:
    cause = _cause_of(error)
    if cause in _NOT_SENT:
        outcome = Outcome.TRANSIENT
    elif cause in (Cause.READ_TIMEOUT, Cause.DROPPED):
        outcome = Outcome.UNCERTAIN
    else:
        # Anything else from requests (an invalid URL, too many redirects…) fails
        # before or without a usable answer; we cannot prove it was not sent.
        outcome = Outcome.UNCERTAIN
    return Failure(outcome, cause, "")


def _classify_status(
    status: int, headers: Mapping[str, str], erp_message: str, body: str
) -> Failure:
    retry_after = parse_retry_after(_header(headers, "Retry-After"))
    words = erp_message or f"HTTP {status}"
    if status == 401:
        return Failure(Outcome.AUTHENTICATION, Cause.HTTP, words, None, status, body)
    if status == 403:
        # Permission, not identity: retrying won't help, an admin must grant it.
        return Failure(Outcome.AUTHENTICATION, Cause.HTTP, words, None, status, body)
    if status == 429:
        return Failure(Outcome.RATE_LIMITED, Cause.HTTP, words, retry_after, status, body)
    if status in (408, 502, 504):
        # A gateway or the server gave up waiting; the ERP may still have done it.
        return Failure(Outcome.UNCERTAIN, Cause.HTTP, words, retry_after, status, body)
    if status >= 500:
        return Failure(Outcome.TRANSIENT, Cause.HTTP, words, retry_after, status, body)
    if 400 <= status < 500:
        return Failure(Outcome.PERMANENT, Cause.HTTP, words, None, status, body)
    # A status we did not expect (1xx, 3xx): the answer is not one we understand.
    return Failure(Outcome.UNCERTAIN, Cause.HTTP, words, None, status, body)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    if isinstance(headers, requests.structures.CaseInsensitiveDict):
        return headers.get(name)
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


# --- words for an admin -----------------------------------------------------------------------


def describe_failure(failure: Failure, *, erp: str, host: str, credential: str) -> Note:
    """The failure as a note an org admin can act on (S1.6).

    `credential` is the code of what the admin typed in ("api_token", "client_secret"),
    never its value; notes.py words it.
    """
    if failure.note is not None:
        return failure.note
    cause = failure.cause
    by_host = {
        Cause.UNKNOWN_HOST: NoteCode.ADMIN_UNKNOWN_HOST,
        Cause.REFUSED: NoteCode.ADMIN_REFUSED,
        Cause.CONNECT_TIMEOUT: NoteCode.ADMIN_CONNECT_TIMEOUT,
        Cause.CERTIFICATE: NoteCode.ADMIN_CERTIFICATE,
        Cause.TLS: NoteCode.ADMIN_TLS,
        Cause.BAD_ADDRESS: NoteCode.ADMIN_BAD_ADDRESS,
        Cause.READ_TIMEOUT: NoteCode.ADMIN_READ_TIMEOUT,
        Cause.DROPPED: NoteCode.ADMIN_DROPPED,
    }
    if cause in by_host:
        return note(by_host[cause], erp=erp, host=host)
    return _describe_status(failure, erp=erp, host=host, credential=credential)


def _describe_status(failure: Failure, *, erp: str, host: str, credential: str) -> Note:
    status = failure.status
    if failure.outcome is Outcome.AUTHENTICATION and status == 403:
        return note(NoteCode.ADMIN_FORBIDDEN, erp=erp, credential=credential)
    if failure.outcome is Outcome.AUTHENTICATION:
        return note(NoteCode.ADMIN_CREDENTIAL_REFUSED, credential=credential)
    if failure.outcome is Outcome.RATE_LIMITED and failure.retry_after:
        return note(NoteCode.ADMIN_RATE_LIMITED_FOR, erp=erp, seconds=f"{failure.retry_after:.0f}")
    if failure.outcome is Outcome.RATE_LIMITED:
        return note(NoteCode.ADMIN_RATE_LIMITED, erp=erp)
    if status == 404:
        return note(NoteCode.ADMIN_NOT_FOUND, erp=erp, host=host)
    if status is not None and status >= 500:
        return note(NoteCode.ADMIN_ERP_PROBLEM, erp=erp, status=status)
    if failure.outcome is Outcome.PERMANENT:
        return note(NoteCode.ADMIN_REQUEST_REFUSED, erp=erp)
    return note(NoteCode.ADMIN_NOT_UNDERSTOOD, erp=erp)


# --- secrets and logs -------------------------------------------------------------------------


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace any secret that slipped into `text` (a defence in depth, not the plan)."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    return text


def log_call(
    logger: logging.Logger,
    *,
    erp: str,
    operation: str,
    count: int,
    status: str,
    started: float,
) -> int:
    """One INFO line per call; returns the duration in milliseconds."""
    seconds = time.monotonic() - started
    duration_ms = int(seconds * 1000)
    logger.info(
        "%s %s count=%d status=%s duration_ms=%d", erp, operation, count, status, duration_ms
    )
    # The request latency histogram (ops/metrics.py).
    events.erp_called.send(
        sender=log_call, erp=erp, operation=operation, status=status, seconds=seconds
    )
    return duration_ms


def erp_message_from(body: Any) -> str:
    """The human message in an ERP's error body (OData's error.message, OAuth's description)."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            return str(error.get("message") or error.get("code") or "")
        if isinstance(error, str):
            return str(body.get("error_description") or error)
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict))
    return ""


def ms_since(started: float) -> int:
    """Milliseconds since a `time.monotonic()` reading."""
    return int((time.monotonic() - started) * 1000)


def json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def failed_result(
    reference: str,
    payload: dict[str, Any],
    failure: Failure,
    started: float,
    secrets: Iterable[str],
) -> PostResult:
    """A posting's result when the call failed for it: the ERP's words, never a secret."""
    secrets = list(secrets)
    return PostResult(
        reference=reference,
        outcome=failure.outcome,
        message=redact(failure.message, secrets),
        note=failure.said,
        retry_after=failure.retry_after,
        payload=payload,
        response_status=failure.status,
        response_body=redact(failure.body, secrets),
        duration_ms=ms_since(started),
    )


@contextmanager
def admin_errors(connector: Any) -> Iterator[None]:
    """Turns a CallFailed inside a non-posting call into a ConnectorError with plain words.

    `connector` offers `admin_message(failure)` and `config.secrets()`; no secret it
    holds may reach the message.
    """
    try:
        yield
    except CallFailed as error:
        failure = error.failure
        raise ConnectorError(
            failure.outcome,
            connector.admin_message(failure),
            erp_words=redact(failure.message, connector.config.secrets()),
            retry_after=failure.retry_after,
            status=failure.status,
        ) from None
