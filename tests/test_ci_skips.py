"""CI=true fails a run that skips a test, except the postgres_only tests on SQLite."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest
from django.db import connection

from tests.conftest import _postgres_only_skipped, skips_failing_ci


def report(nodeid: str) -> pytest.TestReport:
    return cast(pytest.TestReport, SimpleNamespace(nodeid=nodeid))


def test_ci_refuses_every_skip_but_the_marked_postgres_only_ones() -> None:
    marked = "tests/test_audit_chain.py::test_s8_6_the_database_refuses_changes_too"
    skipped = [report(marked), report("tests/test_x.py::test_forgotten")]
    assert skips_failing_ci(skipped, {marked}) == ["tests/test_x.py::test_forgotten"]
    assert skips_failing_ci(skipped, set()) == [marked, "tests/test_x.py::test_forgotten"]


def test_the_postgres_only_marker_skips_on_sqlite_only(request: Any) -> None:
    # This session collected test_audit_chain's postgres-only test if it was selected; the
    # marker's effect is checked on the collection hook's record of what it skipped.
    marked = {
        item.nodeid
        for item in request.session.items
        if item.get_closest_marker("postgres_only") is not None
    }
    if connection.vendor == "postgresql":
        assert _postgres_only_skipped == set()
    else:
        assert _postgres_only_skipped == marked
