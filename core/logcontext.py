"""What a log line is about: the request, the organization, the sync run, the record.

Set where it becomes known (the request middleware, a run's execution) and read by the
logging filter (config/logging.py), so a line carries it without every call passing it.
Context variables, so each thread (a gunicorn thread, a run's heartbeat) and each task keeps
its own. Only identifiers go here: a request id, a slug, a run id, a record's reference;
never a name, an amount or a secret.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

FIELDS = ("request_id", "organization", "run_id", "record")

_current: ContextVar[dict[str, str | int]] = ContextVar("log_context", default={})  # noqa: B039


def current() -> dict[str, str | int]:
    return _current.get()


def bind(**values: str | int | None) -> Token:
    """Add to the context until `reset(token)`; None leaves a field as it was."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise ValueError(f"not a log context field: {sorted(unknown)}")
    merged = {**_current.get(), **{k: v for k, v in values.items() if v is not None}}
    return _current.set(merged)


def reset(token: Token) -> None:
    _current.reset(token)


def start(**values: str | int | None) -> None:
    """A fresh context (a new request), nothing kept from before."""
    _current.set({})
    bind(**values)


def clear() -> None:
    _current.set({})


@contextmanager
def bound(**values: str | int | None) -> Iterator[None]:
    token = bind(**values)
    try:
        yield
    finally:
        reset(token)
