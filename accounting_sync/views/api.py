"""POST /api/v1/records: the volunteer app sends approved records here."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from http import HTTPStatus

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from accounting_sync.inbound import ingest, parse_body, validate_batch
from accounting_sync.models import FinancialRecord
from accounting_sync.triggers import request_approval_sync
from core import events, logcontext
from organizations.models import ApiKey, Organization

logger = logging.getLogger(__name__)

# How long the volunteer app is asked to wait before sending again when the
# database cannot be reached (a restart or failover usually takes this long).
DATABASE_RETRY_AFTER_SECONDS = 30


def _error(status: HTTPStatus, code: str, message: str, **extra) -> JsonResponse:
    response = JsonResponse({"error": code, "message": message, **extra}, status=status)
    if status == HTTPStatus.UNAUTHORIZED:
        response["WWW-Authenticate"] = 'Bearer realm="records"'
    return response


def _database_unavailable_is_503(
    view: Callable[[HttpRequest], JsonResponse],
) -> Callable[[HttpRequest], JsonResponse]:
    """A database that cannot be reached is a 503 with Retry-After, not a 500: the volunteer
    app then sends the request again. Storage is one transaction and the request is
    idempotent by source_id, so a retry after an outage can only store it once."""

    @wraps(view)
    def wrapper(request: HttpRequest) -> JsonResponse:
        try:
            return view(request)
        except (OperationalError, InterfaceError) as problem:
            logger.warning(
                "Inbound records refused with 503: the database cannot be reached (%s: %s)",
                type(problem).__name__,
                problem,
            )
            response = _error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "unavailable",
                "The records could not be stored: the database cannot be reached. Send the "
                f"same request again in {DATABASE_RETRY_AFTER_SECONDS} seconds; a record that "
                "was stored after all is then answered as unchanged.",
            )
            response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
            return response

    return wrapper


def _api_key(request: HttpRequest) -> ApiKey | None:
    scheme, _, raw_key = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw_key.strip():
        return None
    return ApiKey.authenticate(raw_key.strip())


def _declared_length(request: HttpRequest) -> int:
    try:
        return int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


def _request_sync(organization: Organization) -> None:
    """Ask for the approval sync; the records are stored, so whatever fails here the
    answer stays 201 and the sweep starts the run later (a lost trigger)."""
    try:
        request_approval_sync(organization)
    except (OperationalError, InterfaceError) as problem:
        logger.warning(
            "Records of organization %s stored, but the approval sync was not requested "
            "(%s: %s); the sweep will start it.",
            organization.pk,
            type(problem).__name__,
            problem,
        )


@csrf_exempt  # authenticated by API key, not by a browser session
@require_POST
@_database_unavailable_is_503
def receive_records(request: HttpRequest) -> JsonResponse:
    key = _api_key(request)
    if key is None:
        return _error(
            HTTPStatus.UNAUTHORIZED,
            "unauthorized",
            "Send the organization's API key as 'Authorization: Bearer <key>'.",
        )
    logcontext.bind(organization=key.organization.slug)  # until the request ends
    limit = settings.INBOUND_MAX_BODY_BYTES
    # Refuse on the declared length before reading a byte of an oversized body.
    if _declared_length(request) > limit or len(request.body) > limit:
        return _error(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "body_too_large",
            f"The body may be at most {limit} bytes.",
        )
    content_type = request.content_type or ""
    if content_type != "application/json" and not content_type.endswith("+json"):
        return _error(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "not_json",
            "Send the records as JSON with 'Content-Type: application/json'.",
        )
    try:
        payload = parse_body(request.body)  # numbers bounded: see inbound.MAX_NUMBER_LENGTH
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:
        return _error(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            "not_json",
            f"The body is not valid JSON: {problem}.",
        )
    except RecursionError:  # valid JSON, but nested deeper than any record could be
        return _error(HTTPStatus.BAD_REQUEST, "invalid", "The JSON is nested too deeply.")

    single = isinstance(payload, dict)
    items = [payload] if single else payload
    if not isinstance(items, list):
        return _error(
            HTTPStatus.BAD_REQUEST, "invalid", "Send one record (an object) or a list of records."
        )
    if not items:
        return _error(HTTPStatus.BAD_REQUEST, "invalid", "The list of records is empty.")
    if len(items) > settings.INBOUND_MAX_RECORDS:
        return _error(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            "too_many_records",
            f"Send at most {settings.INBOUND_MAX_RECORDS} records per request (got {len(items)}).",
        )

    records, errors = validate_batch(items)
    if errors:
        if single:  # name the fields plainly when there is only one record
            errors = {
                name.removeprefix("[0]").lstrip(".") or "record": messages
                for name, messages in errors.items()
            }
        return _error(
            HTTPStatus.BAD_REQUEST,
            "invalid",
            f"{len(errors)} field(s) are invalid; nothing was stored.",
            errors=errors,
        )

    result = ingest(key.organization, records)
    if result.conflicts:
        return _error(
            HTTPStatus.CONFLICT,
            "conflict",
            "A record with the same source_id was already received with different content; "
            "nothing was stored.",
            conflicts=result.conflicts,
        )
    if result.created:
        events.records_received.send(
            sender=FinancialRecord, organization_id=key.organization.pk, created=result.created
        )
        _request_sync(key.organization)
    body = {
        "created": result.created,
        "unchanged": len(result.outcomes) - result.created,
        "records": [outcome.as_json() for outcome in result.outcomes],
    }
    return JsonResponse(body, status=HTTPStatus.CREATED if result.created else HTTPStatus.OK)
