"""The periodic alert check (beat: `alerts-check` in config/settings.py)."""

from __future__ import annotations

from celery import shared_task

from alerts import rules


@shared_task(ignore_result=True)
def check_alerts() -> None:
    """Open and resolve what time alone changes (S7.2's window, S7.3's 48 hours, S7.4).

    Safe to run twice at once: opening is refused by the database for a problem that
    already has an open alert, and resolving twice sets the same thing.
    """
    rules.periodic_check()
