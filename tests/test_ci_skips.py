"""No test skips itself. The tests that need PostgreSQL say why, and `make test` leaves them
out by selection only where the database is not PostgreSQL (CI's PostgreSQL pass runs
them); under CI=true any skip fails the run (tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def pytest_line(database_url: str | None) -> str:
    """The pytest command `make test` would run with this DATABASE_URL (make -n runs none)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    printed = subprocess.run(
        ["make", "-n", "-s", "test"], cwd=REPO, env=env, capture_output=True, text=True
    ).stdout
    return next(line for line in printed.splitlines() if "bin/pytest" in line)


def test_make_test_leaves_out_postgres_only_tests_only_off_postgresql() -> None:
    assert '-m "not postgres_only"' in pytest_line(None)
    assert '-m "not postgres_only"' in pytest_line("sqlite:///var/x.sqlite3")
    assert "postgres_only" not in pytest_line("postgres://postgres@127.0.0.1:5432/test")


def test_every_postgres_only_test_says_why(request: Any) -> None:
    marked = [
        item.get_closest_marker("postgres_only")
        for item in request.session.items
        if item.get_closest_marker("postgres_only") is not None
    ]
    assert all(marker.kwargs.get("reason") for marker in marked)
