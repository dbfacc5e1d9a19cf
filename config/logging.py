"""Logging filters and formatters named in settings.LOGGING."""

from __future__ import annotations

import logging

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from core import logcontext


class ForbiddenInOneLine(logging.Filter):
    """A 403 (PermissionDenied) is logged by Django with its traceback; a refused request is
    expected and needs one warning line saying which path was refused, not a stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True


class WithContext(logging.Filter):
    """Puts what the line is about (core/logcontext.py) on the record: request_id,
    organization, run_id, record. A value the call passed itself (`extra=`) wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in logcontext.current().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _context_of(record: logging.LogRecord) -> dict[str, object]:
    return {
        name: getattr(record, name)
        for name in logcontext.FIELDS
        if getattr(record, name, None) is not None
    }


class PlainWithContext(logging.Formatter):
    """The demo's plain line, with the context in brackets where there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context_of(record)
        if not context:
            return line
        first, newline, rest = line.partition("\n")
        tags = " ".join(f"{name}={value}" for name, value in context.items())
        return f"{first} [{tags}]{newline}{rest}"


class JsonLines(JsonFormatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context
    fields, a traceback when there is one, and what a call passed with `extra=`.

    Django's request logger adds the request object itself: left out, since its text is the
    full path with its query, which may hold what a person typed.
    """

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            reserved_attrs=[*RESERVED_ATTRS, "request"],
        )
