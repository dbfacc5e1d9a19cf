"""Logging filters named in settings.LOGGING."""

from __future__ import annotations

import logging


class ForbiddenInOneLine(logging.Filter):
    """A 403 (PermissionDenied) is logged by Django with its traceback; a refused request is
    expected and needs one warning line saying which path was refused, not a stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "status_code", None) == 403:
            record.exc_info = None
            record.exc_text = None
        return True
