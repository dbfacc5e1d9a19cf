"""How many approved records per second the inbound API stores with 20 clients at once
(issue 13, "Done when": `inbound_records_per_s`).

    make bench            # or: .venv/bin/python bench/inbound_bench.py [--clients N] [--seconds S]

1. Creates a throw-away test database on PostgreSQL (`DATABASE_URL` or
   postgres://postgres@127.0.0.1:5432/bench) with one organization and its API key. Its
   connector is off, so the figure is the API's own: storing records, not sending them.
2. Starts gunicorn with the production settings (config/gunicorn_conf.py), as ops_bench.py
   does, and posts from N client threads for S seconds: each request carries BATCH new
   approved records, as the volunteer app sends them.

Prints its figures, and as its last line one JSON object with `inbound_records_per_s`,
`inbound_requests_per_s`, `inbound_p95_ms` and `inbound_errors`.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import threading
import time

import requests
from dataset import test_database
from ops_bench import REPO, connection, free_port, percentile, say, server_env
from report import emit

CLIENTS = 20
BATCH = 10  # records per request


def claims(numbers: itertools.count, count: int) -> list[dict[str, object]]:
    return [
        {
            "source_id": f"bench-{number}",
            "kind": "reimbursement",
            "category": "travel",
            "amount": f"{100 + number % 900}.50",
            "currency": "NOK",
            "expense_date": "2026-11-03",
            "approved_at": "2026-11-04T09:00:00+01:00",
            "claimant": {"reference": f"V-{number % 50}", "name": "Kari Nordmann"},
        }
        for number in itertools.islice(numbers, count)
    ]


def organization_key() -> str:
    from integrations.models import Integration
    from organizations.models import ApiKey, Organization

    organization = Organization.objects.create(name="Bench", slug="bench")
    Integration.objects.create(organization=organization, connector="xledger", enabled=False)
    _, key = ApiKey.issue(organization)
    return key


def load(url: str, key: str, clients: int, seconds: float) -> dict[str, float]:
    numbers = itertools.count()
    lock = threading.Lock()
    stored = [0] * clients
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[int] = []
    stop = time.monotonic() + seconds

    def client(slot: int) -> None:
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {key}"
            session.headers["X-Forwarded-Proto"] = "https"
            while time.monotonic() < stop:
                with lock:
                    body = claims(numbers, BATCH)
                started = time.perf_counter()
                answer = session.post(url, json=body, timeout=30)
                latencies[slot].append((time.perf_counter() - started) * 1000)
                if answer.status_code == 201:
                    stored[slot] += BATCH
                else:
                    errors.append(answer.status_code)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    samples = [ms for mine in latencies for ms in mine]
    return {
        "records_per_s": round(sum(stored) / elapsed, 1),
        "requests_per_s": round(len(samples) / elapsed, 1),
        "p50_ms": round(statistics.median(samples), 1),
        "p95_ms": round(percentile(samples, 0.95), 1),
        "errors": len(errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        say(f"The benchmark needs PostgreSQL; DATABASE_URL names {connection.vendor}.")
        return 2

    import subprocess

    from accounting_sync.models import FinancialRecord

    with test_database() as name:
        say(f"database {name}")
        key = organization_key()
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn_conf.py", "config.wsgi"],
            cwd=REPO,
            # Behind a TLS proxy, as in production: the proxy's header says https.
            env={**server_env(port), "BEHIND_TLS_PROXY": "true", "ALLOWED_HOSTS": "127.0.0.1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                    break
                except requests.RequestException:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("gunicorn did not start") from None
                    time.sleep(0.3)
            figures = load(
                f"http://127.0.0.1:{port}/api/v1/records", key, args.clients, args.seconds
            )
        finally:
            server.terminate()
            server.wait(timeout=20)
        kept = FinancialRecord.objects.count()
        connection.close()
    say(
        f"inbound: {figures['records_per_s']} records/s ({figures['requests_per_s']} requests/s "
        f"of {BATCH}) from {args.clients} clients; p50 {figures['p50_ms']} ms, p95 "
        f"{figures['p95_ms']} ms; {figures['errors']} not stored; {kept} records in the database"
    )
    emit(
        "inbound",
        {
            "inbound_records_per_s": figures["records_per_s"],
            "inbound_requests_per_s": figures["requests_per_s"],
            "inbound_p50_ms": figures["p50_ms"],
            "inbound_p95_ms": figures["p95_ms"],
            "inbound_errors": figures["errors"],
            "inbound_clients": args.clients,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
