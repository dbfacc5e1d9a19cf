"""The request and response values the handlers pass around, independent of the socket."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class Request:
    method: str
    path: str  # without the query string, not percent-decoded
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes
    base_url: str  # "https://localhost:<port>", as the client addressed us

    @classmethod
    def build(
        cls, method: str, target: str, headers: dict[str, str], body: bytes, base_url: str
    ) -> Request:
        path, _, query = target.partition("?")
        return cls(
            method=method.upper(),
            path=path,
            query=dict(parse_qsl(query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in headers.items()},
            body=body,
            base_url=base_url,
        )

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Close the connection without answering (drop_after_commit_rate).
    drop: bool = False
    # How /_sandbox/requests counts it ("ok", "error", "rate_limited"); None: not counted.
    outcome: str | None = None


def _default(value: Any) -> Any:
    # Business Central amounts are kept as Decimal (never float arithmetic) and only
    # become JSON numbers on the way out.
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, default=_default).encode()


def json_response(
    status: int,
    value: Any,
    headers: dict[str, str] | None = None,
    *,
    content_type: str = "application/json; charset=utf-8",
    outcome: str | None = None,
) -> Response:
    return Response(
        status=status,
        body=dumps(value),
        headers={"Content-Type": content_type, **(headers or {})},
        outcome=outcome,
    )


def text_response(status: int, text: str, *, content_type: str = "text/plain") -> Response:
    return Response(
        status=status,
        body=text.encode(),
        headers={"Content-Type": f"{content_type}; charset=utf-8"},
    )
