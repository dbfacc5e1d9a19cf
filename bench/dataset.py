"""A large, realistic data set for the benchmarks: organizations, records, runs, sync_logs.

    from dataset import build, test_database
    with test_database():                  # optional: a throw-away PostgreSQL test database
        ids = build(organizations=500, sync_logs=1_000_000)

`build(organizations: int = 500, sync_logs: int = 1_000_000, records: int | None = None,
seed: int = 6) -> dict` must run after `django.setup()`, against an EMPTY, migrated
PostgreSQL database (a test database: it writes directly with COPY). It creates

- `organizations` organizations, each with an Integration (about half Xledger, half
  Business Central; most enabled with `connection_verified_at` set, every 25th disabled),
  two category mappings, and one org admin user `admin-<slug>`;
- a global admin `global-admin` and an auditor `auditor` of the biggest organization
  (every user's password is `PASSWORD`);
- `records` FinancialRecords (default `sync_logs // 5`) in every state: synced, failed
  (with retry times), pending (some never tried, some waiting for a retry, a few older
  than 48 hours), skipped;
- SyncRuns that cover the attempts (succeeded, partial, failed) plus a few running now;
- `sync_logs` attempts over the last 365 days, ids in time order, with VALID
  per-organization hash chains made by `core.chain.digest` itself, so
  `verify_audit_chain` passes. The first organization (`BIG_SLUG`) holds a tenth of
  them, so its 1,000th audit page exists.

It prints what it made and how long it took, and returns a dict:
`big_slug`, `big_organization_id`, `big_admin` (username), `auditor`, `global_admin`,
`password`, `organization_slugs` (all of them), `counts` (rows per table), `seconds`.

Speed: rows are generated in Python and written with PostgreSQL COPY (psycopg 3) with
triggers and foreign-key checks off for the load only (`session_replication_role =
replica`: the rows are consistent by construction), then the tables are ANALYZEd.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

PASSWORD = "bench-password-1"
BIG_SLUG = "org-000"
BIG_SHARE = 0.10  # of all sync_logs rows: the organization whose deep pages are measured
RUNNING_RUNS = 5
CATEGORIES = ("travel", "food", "equipment", "course", "honorarium")
ERRORS = (
    ("transient", "The ERP answered 503 Service Unavailable; will retry.", 503),
    ("rate_limited", "Too many requests: the ERP asked to wait 30 s.", 429),
    ("permanent", "Konto 7130 finnes ikke i regnskapet - sjekk kontoplanen.", 400),
    ("authentication", "The ERP refused the credentials (401): renew the API token.", 401),
)
NAMES = ("Kari Nordmann", "Ola Ærlig", "Åse Øvrebø", "Per Hansen", "Bjørn Dæhlie", "Siri Lund")


def say(text: str) -> None:
    print(text, flush=True)


def log_in(client, user) -> None:
    """`client.force_login(user)`, and the second step too where it is required.

    Global admins must have passed a second factor (issue 12 item 2), or every page sends
    them to it. force_login stands for a whole login: the session is marked verified, as
    django_otp.login would, with an authenticator app made for them here.
    """
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from accounts import two_factor

    client.force_login(user)
    if not two_factor.required_for(user):
        return
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    device = device or TOTPDevice.objects.create(
        user=user, name=two_factor.APP_DEVICE_NAME, confirmed=True
    )
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


@contextmanager
def test_database(verbosity: int = 0) -> Iterator[str]:
    """A throw-away test database for the duration (Django's own test utilities)."""
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    old_name = connection.creation.create_test_db(
        verbosity=verbosity, autoclobber=True, serialize=False
    )
    try:
        yield connection.settings_dict["NAME"]
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=verbosity)
        teardown_test_environment()


def _copy(cursor, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    count = 0
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def _reset_sequence(cursor, table: str) -> None:
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
        f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
    )


def _org_shares(organizations: int, total: int, rng: random.Random) -> list[int]:
    """Rows per organization: one big one, the rest skewed (a few large, many small)."""
    if organizations == 1:
        return [total]
    big = int(total * BIG_SHARE)
    weights = [1 / (n + 3) ** 0.6 * rng.uniform(0.5, 1.5) for n in range(organizations - 1)]
    scale = (total - big) / sum(weights)
    shares = [big] + [max(1, int(w * scale)) for w in weights]
    shares[1] += total - sum(shares)  # exactly `total`
    return shares


class _Builder:
    def __init__(self, organizations: int, sync_logs: int, records: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n_orgs = organizations
        self.n_logs = sync_logs
        self.n_records = max(records, organizations)
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.start = self.now - timedelta(days=365)
        self.counts: dict[str, int] = {}

    # --- organizations, users, integrations ------------------------------------------

    def organizations(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.hashers import make_password

        from integrations import crypto
        from integrations.models import CategoryMapping, Integration
        from organizations.models import Membership, Organization

        User = get_user_model()
        orgs = Organization.objects.bulk_create(
            Organization(name=f"Organisasjon {n:03d} - Ås og Æra", slug=f"org-{n:03d}")
            for n in range(self.n_orgs)
        )
        self.orgs = orgs
        password = make_password(PASSWORD)  # hashed once, shared: 500 hashes would take long
        users = User.objects.bulk_create(
            [User(username=f"admin-{org.slug}", password=password) for org in orgs]
            + [
                User(username="global-admin", password=password, is_staff=True, is_superuser=True),
                User(username="auditor", password=password),
            ]
        )
        Membership.objects.bulk_create(
            [
                Membership(user=u, organization=o, role="admin")
                for u, o in zip(users, orgs, strict=False)
            ]
            + [Membership(user=users[-1], organization=orgs[0], role="auditor")]
        )
        ciphertexts = {
            "xledger": crypto.encrypt({"api_token": "xl-bench-token"}),
            "business_central": crypto.encrypt({"client_secret": "bc-bench-secret"}),
        }
        verified = self.now - timedelta(days=400)
        integrations = []
        self.connector: dict[int, str] = {}
        for n, org in enumerate(orgs):
            connector = "xledger" if n % 2 == 0 else "business_central"
            self.connector[org.pk] = connector
            disabled = n % 25 == 24
            integrations.append(
                Integration(
                    organization=org,
                    connector=connector,
                    enabled=not disabled,
                    base_url="https://erp.example.test/api",
                    authority_host="https://login.example.test"
                    if connector == "business_central"
                    else "",
                    client_id="bench-client" if connector == "business_central" else "",
                    tenant_id="bench-tenant" if connector == "business_central" else "",
                    environment="production" if connector == "business_central" else "",
                    company_id="bench-company" if connector == "business_central" else "",
                    cost_center_kind_db_id=101 if connector == "xledger" else None,
                    cost_center_dimension="AVD" if connector == "business_central" else "",
                    payable_account="2910",
                    schedule=("daily", "weekly", "manual", "monthly")[n % 4],
                    schedule_time="02:00" if n % 4 != 2 else None,
                    schedule_weekday=1 if n % 4 == 1 else None,
                    schedule_day=1 if n % 4 == 3 else None,
                    credentials_ciphertext=ciphertexts[connector],
                    credentials_updated_at=verified,
                    connection_verified_at=None if n % 50 == 49 else verified,
                    erp_accounts=[{"code": "7130", "name": "Reisekostnader"}],
                    erp_cost_centers=[{"code": "300", "name": "Avdeling 300"}],
                )
            )
        integrations = Integration.objects.bulk_create(integrations)
        CategoryMapping.objects.bulk_create(
            CategoryMapping(
                integration=integration,
                category=category,
                account_code="7130",
                cost_center_code="300",
            )
            for integration in integrations
            for category in ("travel", "food")
        )
        self.counts.update(organizations=len(orgs), users=len(users))

    # --- the plan: which record gets which attempts, in which run --------------------

    def plan(self) -> None:
        """Decide every record's state and attempts, then lay all attempts out in time."""
        rng = self.rng
        log_shares = _org_shares(self.n_orgs, self.n_logs, rng)
        record_shares = [max(1, round(s * self.n_records / self.n_logs)) for s in log_shares]
        self.records: list[tuple] = []  # (id, org_pk, state, attempts)
        queues: list[list[tuple[int, int, str]]] = []  # per org: (record id, attempt, status)
        next_record = 1
        for org, logs, n_records in zip(self.orgs, log_shares, record_shares, strict=True):
            # Records that were never sent (pending, skipped) hold no attempts.
            unsent = max(0, min(n_records - 1, round(n_records * 0.08)))
            sent = n_records - unsent
            sent = min(sent, logs)
            attempts = [1] * sent
            extra = logs - sent
            # The remaining attempts go to records that failed on their way (retries).
            retried = rng.sample(range(sent), k=max(1, sent // 3)) if sent else []
            for _ in range(extra):
                attempts[rng.choice(retried)] += 1
            queue: list[tuple[int, int, str]] = []
            for k in attempts:
                rid = next_record
                next_record += 1
                roll = rng.random()
                state = "synced" if roll < 0.85 or (k == 1 and roll < 0.95) else "failed"
                if state == "failed" and rng.random() < 0.2:
                    state = "pending"  # failed before, waiting for the next automatic retry
                for number in range(1, k + 1):
                    last = number == k
                    if last and state == "synced":
                        status = "succeeded"
                    elif last and state == "pending" and rng.random() < 0.3:
                        status = "uncertain"
                    else:
                        status = "failed"
                    queue.append((rid, number, status))
                self.records.append((rid, org.pk, state, k))
            for _ in range(unsent):
                rid = next_record
                next_record += 1
                self.records.append(
                    (rid, org.pk, "skipped" if rng.random() < 0.4 else "pending", 0)
                )
            queues.append(queue)
        # Interleave the organizations' attempts over the year: ids follow time.
        order = [n for n, queue in enumerate(queues) for _ in queue]
        rng.shuffle(order)
        self.queues = queues
        self.order = order

    # --- rows ----------------------------------------------------------------------------

    def _payload(self, connector: str, reference: str, amount: Decimal, day: str, text: str):
        if connector == "xledger":
            common = {
                "currency": {"code": "NOK"},
                "postedDate": day,
                "invoiceDate": day,
                "text": text,
                "transactionSource": {"code": "VH"},
                "extIdentifier": reference,
                "invoiceNumber": reference,
            }
            return {
                "inputs": [
                    {
                        "clientId": f"{reference}:D",
                        "node": {
                            "account": {"code": "7130"},
                            "amount": f"{amount:f}",
                            **common,
                            "glObject1": {"code": "300"},
                        },
                    },
                    {
                        "clientId": f"{reference}:C",
                        "node": {"account": {"code": "2910"}, "amount": f"{-amount:f}", **common},
                    },
                ]
            }
        return {
            "requests": [
                {
                    "method": "POST",
                    "id": "1",
                    "url": "companies(bench-company)/journals(j1)/journalLines",
                    "headers": {"Content-Type": "application/json"},
                    "body": {
                        "accountType": "G/L Account",
                        "accountNumber": "7130",
                        "postingDate": day,
                        "documentNumber": reference,
                        "externalDocumentNumber": reference,
                        "amount": float(amount),
                        "description": text,
                        "balanceAccountType": "G/L Account",
                        "balancingAccountNumber": "2910",
                    },
                }
            ]
        }

    def logs_and_runs(self, cursor) -> None:
        from accounting_sync.models import SyncLog
        from core.chain import GENESIS, digest

        rng = self.rng
        step = (self.now - timedelta(hours=1) - self.start) / max(1, len(self.order))
        positions = [0] * len(self.queues)
        heads: dict[int, str] = {}
        last_attempt: dict[int, int] = {}  # record id → id of its latest attempt
        first_seen: dict[int, datetime] = {}  # record id → time of its first attempt
        last_seen: dict[int, tuple[datetime, str, str, str]] = {}
        self.first_seen, self.last_seen = first_seen, last_seen
        amounts = {
            rid: Decimal(100 + rid % 4900) + Decimal(rid % 100) / 100 for rid, *_ in self.records
        }
        self.amounts = amounts
        # Runs: each organization's attempts go in runs of 20-200 consecutive attempts.
        run_of_org: dict[int, list] = {}  # org index → [run id, left, first, last, counts…]
        runs: list[tuple] = []
        next_run = [1]

        def close(org_index: int) -> None:
            current = run_of_org.pop(org_index, None)
            if current is None:
                return
            run_id, _left, trigger, first, last, ok, bad = current
            status = "succeeded" if not bad else ("failed" if not ok else "partial")
            runs.append((run_id, self.orgs[org_index].pk, trigger, first, last, status, ok, bad))

        error_bodies = {
            message: json.dumps({"error": message}, ensure_ascii=False) for _, message, _ in ERRORS
        }
        # The columns the chain hashes, in the model's own order, around the id and hashes.
        columns = ["id", *SyncLog.CHAIN_FIELDS, "prev_hash", "row_hash"]

        def rows() -> Iterator[tuple]:
            for index, org_index in enumerate(self.order):
                org = self.orgs[org_index]
                rid, number, status = self.queues[org_index][positions[org_index]]
                positions[org_index] += 1
                created = self.start + step * (index + 1)
                created = created.replace(microsecond=created.microsecond // 1000 * 1000)
                current = run_of_org.get(org_index)
                if current is None or current[1] == 0:
                    close(org_index)
                    trigger = rng.choice(("approval", "approval", "manual", "schedule", "retry"))
                    current = [next_run[0], rng.randint(20, 200), trigger, created, created, 0, 0]
                    next_run[0] += 1
                    run_of_org[org_index] = current
                current[1] -= 1
                current[4] = created
                connector = self.connector[org.pk]
                reference = f"VH-{org.pk}-{rid}"
                amount = amounts[rid]
                day = (created.date() - timedelta(days=1)).isoformat()
                payload = self._payload(
                    connector, reference, amount, day, f"Reise Oslo-Hamar {rid}"
                )
                if status == "succeeded":
                    current[5] += 1
                    error_class, message, http = "", "", 200
                    erp_id = f"ERP-{rid}"
                    body = f'{{"dbId": {rid}, "status": "created"}}'
                elif status == "uncertain":
                    current[6] += 1
                    error_class, message, http = "uncertain", "No answer within 30 s.", None
                    erp_id, body = "", ""
                else:
                    current[6] += 1
                    error_class, message, http = ERRORS[rid % len(ERRORS)]
                    erp_id = ""
                    body = error_bodies[message]
                log_id = index + 1
                first_seen.setdefault(rid, created)
                last_seen[rid] = (created, status, message, erp_id)
                content = {
                    "run_id": current[0],
                    "record_id": rid,
                    "organization_id": org.pk,
                    "connector": connector,
                    "attempt_number": number,
                    "trigger": current[2],
                    "status": status,
                    "error_class": error_class,
                    "error_message": message,
                    "payload": payload,
                    "response_status": http,
                    "response_body": body,
                    "duration_ms": 80 + (rid * 7 + number) % 900,
                    "reference": reference,
                    "erp_id": erp_id,
                    "retry_of_id": last_attempt.get(rid),
                    "created_at": created,
                }
                prev = heads.get(org.pk, GENESIS)
                row_hash = digest(prev, content)
                heads[org.pk] = row_hash
                last_attempt[rid] = log_id
                stored = {**content, "payload": json.dumps(payload, ensure_ascii=False)}
                yield (
                    log_id,
                    *(stored[name] for name in SyncLog.CHAIN_FIELDS),
                    prev,
                    row_hash,
                )

        # The logs refer to runs and records written after them: checks are off for the load.
        self.counts["sync_logs"] = _copy(cursor, "sync_logs", columns, rows())
        for org_index in list(run_of_org):
            close(org_index)
        self.runs = runs

    def write_runs(self, cursor) -> None:
        columns = [
            "id",
            "organization_id",
            "connector",
            "trigger",
            "status",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "worker",
            "total",
            "done",
            "sent",
            "failed",
            "skipped",
            "message",
            "skip_reasons",
            "detail_code",
            "detail_params",
            "import_posted",
            "import_refused",
            "error_class",
            "record_ids",
        ]

        def rows() -> Iterator[tuple]:
            for run_id, org_pk, trigger, first, last, status, ok, bad in self.runs:
                finished = last + timedelta(seconds=1)
                # Outcomes are codes and counts, worded when shown (accounting_sync/outcomes.py).
                yield (
                    run_id, org_pk, self.connector[org_pk], trigger, status, first, finished,
                    finished, "bench@worker", ok + bad, ok + bad, ok, bad, 0, "", "[]", "",
                    "{}", 0, 0, "authentication" if status == "failed" and bad > 5 else "", None,
                )  # fmt: skip
            # A few runs in progress now, with none of their attempts written yet.
            for n in range(1, min(RUNNING_RUNS, len(self.orgs) - 1) + 1):
                org_pk = self.orgs[n * 7 % len(self.orgs) or 1].pk
                started = self.now - timedelta(minutes=n)
                yield (
                    len(self.runs) + n, org_pk, self.connector[org_pk], "manual", "running",
                    started, None, self.now, "bench@worker", 250, 10 * n, 10 * n, 0, 0, "",
                    "[]", "", "{}", 0, 0, "", None,
                )  # fmt: skip

        self.counts["sync_runs"] = _copy(cursor, "accounting_sync_syncrun", columns, rows())

    def write_records(self, cursor) -> None:
        rng = self.rng
        columns = [
            "id",
            "organization_id",
            "source_id",
            "kind",
            "category",
            "amount",
            "currency",
            "expense_date",
            "approved_at",
            "claimant_reference",
            "claimant_name",
            "description",
            "state",
            "retry_count",
            "last_error",
            "last_note",
            "next_retry_at",
            "skip_reason",
            "erp_document_id",
            "synced_at",
            "needs_lookup",
            "lookup_failures",
            "received_at",
            "updated_at",
        ]
        states: dict[str, int] = {}

        def rows() -> Iterator[tuple]:
            for rid, org_pk, state, attempts in self.records:
                first = self.first_seen.get(rid)
                if first is None:  # never sent: recent, a few older than 48 hours (S7.3)
                    approved = self.now - timedelta(hours=rng.choice((1, 5, 20, 30, 60, 120)))
                else:
                    approved = first - timedelta(minutes=rng.randint(1, 2880))
                last = self.last_seen.get(rid)
                last_time, last_status, message, erp_id = last or (None, "", "", "")
                next_retry = None
                if state == "failed":
                    assert last_time is not None  # a failed record was sent at least once
                    next_retry = last_time + timedelta(minutes=5 * 2 ** min(attempts, 8))
                elif state == "pending" and attempts:
                    next_retry = self.now + timedelta(minutes=rng.randint(1, 600))
                states[state] = states.get(state, 0) + 1
                category = CATEGORIES[rid % len(CATEGORIES)]
                yield (
                    rid, org_pk, f"src-{rid}",
                    "honorarium" if category == "honorarium" else "reimbursement",
                    category, self.amounts[rid], "NOK",
                    (approved - timedelta(days=3)).date(), approved,
                    f"V-{rid % 5000}", NAMES[rid % len(NAMES)], f"Reise Oslo-Hamar {rid}",
                    state, max(0, attempts - 1), message if state != "synced" else "", "{}",
                    next_retry,
                    "no_mapping" if state == "skipped" else "",
                    erp_id if state == "synced" else "",
                    last_time if state == "synced" else None,
                    last_status == "uncertain", 0, approved, last_time or approved,
                )  # fmt: skip

        self.counts["financial_records"] = _copy(
            cursor, "accounting_sync_financialrecord", columns, rows()
        )
        self.record_states = states


def build(
    organizations: int = 500,
    sync_logs: int = 1_000_000,
    records: int | None = None,
    seed: int = 6,
) -> dict[str, Any]:
    """Fill the (empty, test) database; see the module's docstring for what and what comes back."""
    from django.db import connection, transaction

    if connection.vendor != "postgresql":
        raise RuntimeError("dataset.build() writes with PostgreSQL COPY: use PostgreSQL.")
    started = time.perf_counter()
    builder = _Builder(organizations, sync_logs, records or sync_logs // 5, seed)
    with transaction.atomic():
        builder.organizations()
        builder.plan()
        say(
            f"dataset: {organizations} organizations, {len(builder.records)} records, "
            f"{sync_logs} attempts planned in {time.perf_counter() - started:.1f} s"
        )
        with connection.cursor() as wrapper:
            cursor = wrapper.cursor  # psycopg's own cursor, for COPY
            cursor.execute("SET LOCAL session_replication_role = replica")
            step = time.perf_counter()
            builder.logs_and_runs(cursor)
            say(f"  sync_logs written in {time.perf_counter() - step:.1f} s")
            builder.write_runs(cursor)
            builder.write_records(cursor)
            cursor.execute("SET LOCAL session_replication_role = origin")
            for table in (
                "sync_logs",
                "accounting_sync_syncrun",
                "accounting_sync_financialrecord",
            ):
                _reset_sequence(cursor, table)
    with connection.cursor() as cursor:
        step = time.perf_counter()
        for table in ("sync_logs", "accounting_sync_syncrun", "accounting_sync_financialrecord"):
            cursor.execute(f"ANALYZE {table}")
        say(f"  analyzed in {time.perf_counter() - step:.1f} s")
    seconds = time.perf_counter() - started
    counts = builder.counts
    states = ", ".join(f"{n} {state}" for state, n in sorted(builder.record_states.items()))
    say(
        f"dataset built in {seconds:.1f} s: {counts['organizations']} organizations, "
        f"{counts['users']} users, {counts['financial_records']} records ({states}), "
        f"{counts['sync_runs']} runs, {counts['sync_logs']} sync_logs rows "
        f"({len(builder.queues[0])} in {BIG_SLUG})"
    )
    return {
        "big_slug": BIG_SLUG,
        "big_organization_id": builder.orgs[0].pk,
        "big_admin": f"admin-{BIG_SLUG}",
        "auditor": "auditor",
        "global_admin": "global-admin",
        "password": PASSWORD,
        "organization_slugs": [org.slug for org in builder.orgs],
        "counts": dict(counts),
        "record_states": dict(builder.record_states),
        "first_log_at": builder.start,
        "seconds": round(seconds, 1),
    }


if __name__ == "__main__":  # a quick look: python bench/dataset.py [sync_logs]
    import sys

    from boot import start_django

    start_django()
    from django.core.management import call_command

    logs = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with test_database():
        result = build(sync_logs=logs, organizations=min(500, max(2, logs // 200)))
        if logs <= 100_000:
            call_command("verify_audit_chain")
        say(json.dumps({k: v for k, v in result.items() if k != "organization_slugs"}, default=str))
