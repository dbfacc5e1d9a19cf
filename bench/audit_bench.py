"""How fast the audit log answers and exports with 1,000,000 sync_logs rows (issue 6 item 6).

    make bench            # or: .venv/bin/python bench/audit_bench.py [--reps N] [--sync-logs N]

1. Creates a throw-away PostgreSQL test database (`DATABASE_URL`, default
   postgres://postgres@127.0.0.1:5432/bench) and fills it with `dataset.build()`:
   500 organizations and 1,000,000 sync_logs rows, a tenth of them in one organization.
2. Times the audit log's first page, its 1,000th page and a filtered page (status
   failed and a month's date range) of that organization, logged in as its admin, with
   Django's test client against the real view (middleware, view, template; no network).
3. Exports every row as CSV as a global admin, reading the streamed response in this
   process: rows per second, and memory while streaming (peak of the Python heap
   traced by tracemalloc, and the growth of the process's resident memory).
4. Has PostgreSQL itself write the same rows and columns with
   `COPY (SELECT …) TO STDOUT WITH CSV`, read through psycopg in the same run.

Prints its figures, and as its last line one JSON object with `audit_first_page_p95_ms`,
`audit_deep_page_p95_ms`, `audit_filtered_page_p95_ms`, `export_rows_per_s`,
`copy_rows_per_s`, `export_vs_copy` and `export_peak_mb`.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import timedelta

from boot import start_django

start_django()

import dataset  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.urls import reverse  # noqa: E402
from django.utils import timezone  # noqa: E402
from report import emit  # noqa: E402

from accounting_sync.models import SyncLog  # noqa: E402
from audit import views as audit_views  # noqa: E402
from integrations.models import Organization  # noqa: E402

# The export's columns, as PostgreSQL writes them for the comparison (audit/exports.py).
COPY_SQL = """
COPY (
    SELECT l.id, l.created_at, o.name, l.reference, r.kind, r.category,
           replace(r.amount::text, '.', ','), r.currency, r.claimant_name, l.attempt_number,
           l.trigger, l.status, l.error_class, l.error_message, l.response_status,
           l.duration_ms, l.erp_id, l.retry_of_id, l.prev_hash, l.row_hash
    FROM sync_logs l
    JOIN accounting_sync_financialrecord r ON r.id = l.record_id
    JOIN integrations_organization o ON o.id = l.organization_id
    ORDER BY l.id DESC
) TO STDOUT WITH (FORMAT csv, HEADER, DELIMITER ';')
"""


def say(text: str) -> None:
    print(text, flush=True)


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def time_page(client: Client, url: str, params: dict, reps: int, label: str) -> dict:
    """Server time of one page, `reps` times after a few warm-up calls."""
    for _ in range(5):
        assert client.get(url, params).status_code == 200
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        response = client.get(url, params)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    rows = len(response.context["rows"])
    median, p95 = statistics.median(samples), percentile(samples, 0.95)
    say(f"  {label}: median {median:.1f} ms, p95 {p95:.1f} ms ({reps} requests, {rows} rows)")
    return {"median": median, "p95": p95, "rows": rows}


def resident_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def stream_export(client: Client, url: str, traced: bool) -> dict:
    """Read the whole streamed export as a browser would, in this process."""
    gc.collect()
    rss_before = resident_mb()
    rss_peak = rss_before
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    response = client.get(url)
    assert response.status_code == 200 and response.streaming
    lines = size = 0
    # The test client's response type in django-stubs has no streaming_content.
    for chunk in response.streaming_content:  # type: ignore[attr-defined]
        lines += chunk.count(b"\n")
        size += len(chunk)
        if lines % 50_000 < chunk.count(b"\n") + 1:
            rss_peak = max(rss_peak, resident_mb())
    response.close()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] / 2**20 if traced else 0.0
    if traced:
        tracemalloc.stop()
    rss_peak = max(rss_peak, resident_mb())
    return {
        "rows": lines - 1,  # the header line
        "bytes": size,
        "seconds": seconds,
        "rows_per_s": (lines - 1) / seconds,
        "expected": int(response["X-Row-Count"]),
        "heap_peak_mb": peak,
        "rss_growth_mb": rss_peak - rss_before,
    }


def copy_rows() -> dict:
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        started = time.perf_counter()
        lines = size = 0
        with cursor.copy(COPY_SQL) as copy:
            for block in copy:
                lines += bytes(block).count(b"\n")
                size += len(block)
        seconds = time.perf_counter() - started
    return {
        "rows": lines - 1,
        "bytes": size,
        "seconds": seconds,
        "rows_per_s": (lines - 1) / seconds,
    }


def measure(ids: dict, reps: int) -> dict[str, object]:
    users = get_user_model().objects
    big = Organization.objects.get(slug=ids["big_slug"])
    admin = Client()
    dataset.log_in(admin, users.get(username=ids["big_admin"]))
    url = reverse("audit_log", args=[big.slug])
    say(f"audit log of {big.slug} ({SyncLog.objects.filter(organization=big).count()} rows):")

    page_size = audit_views.PAGE_SIZE
    newest_first = SyncLog.objects.filter(organization=big).order_by("-id")
    # Page 1,000 starts after the last row of page 999.
    before = newest_first.values_list("id", flat=True)[999 * page_size - 1]
    first = time_page(admin, url, {}, reps, "first page")
    deep = time_page(admin, url, {"before": before}, reps, "page 1,000")
    month_start = timezone.localdate() - timedelta(days=200)
    filtered_params = {
        "status": "failed",
        "date_from": month_start.isoformat(),
        "date_to": (month_start + timedelta(days=30)).isoformat(),
    }
    filtered = time_page(admin, url, filtered_params, reps, "status failed, one month")

    everyone = Client()
    dataset.log_in(everyone, users.get(username=ids["global_admin"]))
    export_url = reverse("global_audit_export", args=["csv"])
    say("full CSV export (global admin, every organization):")
    export = stream_export(everyone, export_url, traced=False)
    assert export["rows"] == export["expected"], export
    say(
        f"  export: {export['rows']} rows, {export['bytes'] / 2**20:.0f} MB in "
        f"{export['seconds']:.1f} s = {export['rows_per_s']:.0f} rows/s; resident memory "
        f"grew {export['rss_growth_mb']:.1f} MB"
    )
    traced = stream_export(everyone, export_url, traced=True)
    say(
        f"  again under tracemalloc: Python heap peak {traced['heap_peak_mb']:.1f} MB "
        f"(resident memory grew {traced['rss_growth_mb']:.1f} MB)"
    )
    copied = copy_rows()
    say(
        f"  PostgreSQL COPY of the same rows: {copied['rows']} rows, "
        f"{copied['bytes'] / 2**20:.0f} MB in {copied['seconds']:.1f} s = "
        f"{copied['rows_per_s']:.0f} rows/s"
    )
    peak_mb = max(traced["heap_peak_mb"], export["rss_growth_mb"], traced["rss_growth_mb"])
    figures = {
        "audit_sync_logs": ids["counts"]["sync_logs"],
        "audit_first_page_median_ms": round(first["median"], 2),
        "audit_first_page_p95_ms": round(first["p95"], 2),
        "audit_deep_page_median_ms": round(deep["median"], 2),
        "audit_deep_page_p95_ms": round(deep["p95"], 2),
        "audit_deep_vs_first": round(deep["p95"] / first["p95"], 2),
        "audit_filtered_page_median_ms": round(filtered["median"], 2),
        "audit_filtered_page_p95_ms": round(filtered["p95"], 2),
        "export_rows": export["rows"],
        "export_rows_per_s": round(export["rows_per_s"], 1),
        "copy_rows_per_s": round(copied["rows_per_s"], 1),
        "export_vs_copy": round(export["rows_per_s"] / copied["rows_per_s"], 3),
        "export_peak_mb": round(peak_mb, 1),
    }
    aims: list[tuple[str, Callable[[], bool]]] = [
        ("deep page within 2x of the first", lambda: figures["audit_deep_vs_first"] <= 2),
        ("export at least a third of COPY", lambda: figures["export_vs_copy"] >= 1 / 3),
        ("export peak memory under 150 MB", lambda: figures["export_peak_mb"] < 150),
    ]
    for aim, met in aims:
        say(f"  aim: {aim}: {'met' if met() else 'NOT met'}")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=200, help="requests per page measured")
    parser.add_argument("--sync-logs", type=int, default=1_000_000)
    parser.add_argument("--organizations", type=int, default=500)
    parser.add_argument(
        "--existing",
        action="store_true",
        help="measure the database DATABASE_URL names, already filled by dataset.build()",
    )
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        say(f"The benchmark needs PostgreSQL; DATABASE_URL names {connection.vendor}.")
        return 2
    settings.DEBUG = False  # no query log growing over a million rows
    if args.existing:  # a database dataset.build() filled before: no test database
        setup_test_environment()  # the test client's context capture, and its host
        ids = {
            "big_slug": dataset.BIG_SLUG,
            "big_admin": f"admin-{dataset.BIG_SLUG}",
            "global_admin": "global-admin",
            "counts": {"sync_logs": SyncLog.objects.count()},
        }
        emit("audit", measure(ids, args.reps))
        return 0
    with dataset.test_database():
        ids = dataset.build(organizations=args.organizations, sync_logs=args.sync_logs)
        figures = measure(ids, args.reps)
    emit("audit", figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
