"""How fast the live admin pages answer with a platform's worth of data (issue 5 item 7).

    make bench            # or: .venv/bin/python bench/pages_bench.py [--repeat N] [--profile]

1. Creates a throw-away test database (Django's test-database utilities: never the
   real one) on PostgreSQL, `DATABASE_URL` or postgres://postgres@127.0.0.1:5432/bench,
   and fills it with `dataset.build()`: 500 organizations and 1,000,000 sync_logs rows.
2. Requests the real views through Django's test Client, logged in, many times each,
   and times each request in this process (the server's time: URL resolving,
   middleware, view, queries, template; no network):
   - the global overview (`overview`) as the global admin, and its query count;
   - the busiest organization's dashboard (`organization_home`) as its admin;
   - an unchanged poll: the dashboard's live part (`dashboard_live?v=<live_version>`),
     and the overview's (`overview_live?v=<version>`), both answering 204.

Prints its figures, and as its last line one JSON object with `overview_queries`,
`overview_median_ms`, `overview_p95_ms`, `dashboard_p95_ms`, `poll_unchanged_p95_ms` and more.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import sys
import time
from collections.abc import Callable

from boot import start_django

start_django()

from dataset import build, log_in, test_database  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpResponseBase  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.urls import reverse  # noqa: E402
from report import emit  # noqa: E402

from integrations.models import Organization  # noqa: E402

ORGANIZATIONS = 500
SYNC_LOGS = 1_000_000


def say(text: str) -> None:
    print(text, flush=True)


def client_for(username: str) -> Client:
    client = Client()
    log_in(client, get_user_model().objects.get(username=username))
    return client


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Page:
    """One URL as one person requests it, with what each request must answer."""

    def __init__(self, label: str, client: Client, url: str, status: int) -> None:
        self.label, self.client, self.url, self.status = label, client, url, status
        self.turned = False  # the request was not what is measured; see OverviewPoll

    def get(self) -> HttpResponseBase:
        response = self.client.get(self.url)
        assert response.status_code == self.status, (self.url, response.status_code)
        return response

    def queries(self) -> int:
        with CaptureQueriesContext(connection) as captured:
            self.get()
        return len(captured)

    def time(self, repeat: int, warm_up: int = 5) -> dict[str, float]:
        for _ in range(warm_up):  # templates compiled, connections and caches warm
            self.get()
        samples: list[float] = []
        while len(samples) < repeat:
            self.turned = False
            started = time.perf_counter()
            self.get()
            if not self.turned:
                samples.append((time.perf_counter() - started) * 1000)
        figures = {
            "median_ms": round(statistics.median(samples), 2),
            "p95_ms": round(percentile(samples, 0.95), 2),
            "max_ms": round(max(samples), 2),
        }
        say(
            f"  {self.label}: median {figures['median_ms']} ms, p95 {figures['p95_ms']} ms, "
            f"max {figures['max_ms']} ms over {repeat} requests"
        )
        return figures

    def profile(self) -> None:
        profiler = cProfile.Profile()
        profiler.enable()
        self.get()
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(30)
        say(out.getvalue())


def overview_version(client: Client) -> str:
    """The version the overview page itself hands its live part."""
    page = client.get(reverse("overview")).content.decode()
    start = page.index('hx-get="', page.index('id="overview-live"')) + len('hx-get="')
    url = page[start : page.index('"', start)].replace("&amp;", "&")
    return url.rpartition("v=")[2]


class OverviewPoll(Page):
    """The overview's unchanged poll. Its version carries the minute (health changes with
    the clock too), so when a minute turns the poll re-renders once, as an open page would;
    that request is not an unchanged poll: it is left out and done again, newly versioned."""

    def __init__(self, label: str, client: Client) -> None:
        super().__init__(label, client, "", 204)
        self.renew()

    def renew(self) -> None:
        self.url = f"{reverse('overview_live')}?v={overview_version(self.client)}"

    def get(self) -> HttpResponseBase:
        response = self.client.get(self.url)
        if response.status_code == 200:
            self.turned = True
            self.renew()
            response = self.client.get(self.url)
        assert response.status_code == self.status, (self.url, response.status_code)
        return response


def measure(ids: dict, repeat: int, profile: bool) -> dict[str, object]:
    admin = client_for(ids["global_admin"])
    busy = client_for(ids["big_admin"])
    big = Organization.objects.get(slug=ids["big_slug"])
    pages: dict[str, Page] = {
        "overview": Page("overview", admin, reverse("overview"), 200),
        "dashboard": Page("dashboard", busy, reverse("organization_home", args=[big.slug]), 200),
        "poll": Page(
            "dashboard poll, unchanged",
            busy,
            f"{reverse('dashboard_live', args=[big.slug])}?v={big.live_version}",
            204,
        ),
        "overview_poll": OverviewPoll("overview poll, unchanged", admin),
    }
    queries = {name: page.queries() for name, page in pages.items()}
    say("queries per request: " + ", ".join(f"{name} {n}" for name, n in queries.items()))
    if profile:
        pages["overview"].profile()

    settings.DEBUG = False  # no query log while timing
    rounds: dict[str, Callable[[], dict[str, float]]] = {
        "overview": lambda: pages["overview"].time(repeat),
        "dashboard": lambda: pages["dashboard"].time(repeat),
        "poll": lambda: pages["poll"].time(repeat * 10),
        "overview_poll": lambda: pages["overview_poll"].time(repeat * 10),
    }
    timed = {name: run() for name, run in rounds.items()}
    return {
        "overview_queries": queries["overview"],
        "overview_median_ms": timed["overview"]["median_ms"],
        "overview_p95_ms": timed["overview"]["p95_ms"],
        "dashboard_queries": queries["dashboard"],
        "dashboard_median_ms": timed["dashboard"]["median_ms"],
        "dashboard_p95_ms": timed["dashboard"]["p95_ms"],
        "poll_unchanged_queries": queries["poll"],
        "poll_unchanged_median_ms": timed["poll"]["median_ms"],
        "poll_unchanged_p95_ms": timed["poll"]["p95_ms"],
        "overview_poll_unchanged_queries": queries["overview_poll"],
        "overview_poll_unchanged_p95_ms": timed["overview_poll"]["p95_ms"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--organizations", type=int, default=ORGANIZATIONS)
    parser.add_argument("--sync-logs", type=int, default=SYNC_LOGS)
    parser.add_argument("--repeat", type=int, default=100, help="requests per page (polls: 10x)")
    parser.add_argument("--profile", action="store_true", help="cProfile one overview request")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        say(f"The benchmark needs PostgreSQL; DATABASE_URL names {connection.vendor}.")
        return 2

    with test_database() as name:
        say(f"database {name}")
        ids = build(organizations=args.organizations, sync_logs=args.sync_logs)
        # As autovacuum leaves a live database: the visibility map set, so the overview's
        # counts come from its indexes alone (index-only scans), not from the tables.
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
        figures = measure(ids, args.repeat, args.profile)
    emit(
        "pages",
        {**figures, "organizations": args.organizations, "sync_logs": args.sync_logs},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
