"""`make run DEMO_FEED=1`: post an approved record every few seconds, so the pages move.

The records go in as the volunteer app sends them: an HTTP POST to /api/v1/records on
the running server, with Blindeforbundet's demo API key (published by seed_demo like the
passwords, so nothing secret is printed or needed). Ctrl-C (or honcho's SIGTERM) stops it.
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from datetime import timedelta
from types import FrameType
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounting_sync.management.commands.seed_demo import BF_MAPPINGS, CLAIMANTS, DEMO_API_KEY

HONORARIUMS = [category for category in BF_MAPPINGS if category.endswith("_honorarium")]
REIMBURSEMENTS = [category for category in BF_MAPPINGS if category not in HONORARIUMS]


class Command(BaseCommand):
    help = "Post an approved record through the inbound API every few seconds (the demo)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running server")
        parser.add_argument("--interval", type=float, default=5.0, help="seconds between posts")
        parser.add_argument("--count", type=int, default=0, help="stop after N (0: never)")
        parser.add_argument(
            "--key",
            default=DEMO_API_KEY,
            help="the organization's API key (default: Blindeforbundet's demo key)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("demo_feed uses the demo's published API key; DEBUG=true only.")
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            self._feed(options["url"].rstrip("/"), options["key"], options)
        except KeyboardInterrupt:
            self.stdout.write("demo feed stopped")
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _feed(self, url: str, key: str, options: dict[str, Any]) -> None:
        session = requests.Session()
        session.trust_env = False  # the server is local: no proxy
        session.headers["Authorization"] = f"Bearer {key}"
        rng = random.Random()
        posted = 0
        waiting_said = False
        while not options["count"] or posted < options["count"]:
            record = self._record(rng)
            try:
                response = session.post(f"{url}/api/v1/records", json=record, timeout=30)
            except requests.ConnectionError:
                if not waiting_said:  # honcho starts the feed with the web server
                    self.stdout.write(f"demo feed: waiting for {url}")
                    waiting_said = True
                time.sleep(1)
                continue
            if response.status_code == 401:
                raise CommandError(
                    "The API key was refused (a new key was issued since the demo was "
                    "seeded?): pass the organization's current key with --key."
                )
            if response.status_code not in (200, 201):
                raise CommandError(f"The server answered {response.status_code}.")
            (stored,) = response.json()["records"]
            self.stdout.write(
                f"demo feed: {record['category']} {record['amount']} NOK "
                f"-> {stored['reference']} ({stored['state']})"
            )
            posted += 1
            if not options["count"] or posted < options["count"]:
                time.sleep(options["interval"])

    @staticmethod
    def _record(rng: random.Random) -> dict[str, Any]:
        kind = "honorarium" if rng.random() < 0.25 else "reimbursement"
        reference, name = rng.choice(CLAIMANTS)
        # A little in the past: the API refuses an approval from the future, and clocks drift.
        approved = timezone.localtime() - timedelta(seconds=5)
        return {
            "source_id": f"demo-feed-{uuid.uuid4().hex[:16]}",
            "kind": kind,
            "category": rng.choice(HONORARIUMS if kind == "honorarium" else REIMBURSEMENTS),
            "amount": f"{rng.randint(150, 2500)}.{rng.choice(['00', '50'])}",
            "currency": "NOK",
            "expense_date": (approved - timedelta(days=1)).date().isoformat(),
            "approved_at": approved.isoformat(),
            "claimant": {"reference": reference, "name": name},
            "description": f"Demo feed {kind}",
        }


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # stop as Ctrl-C does
