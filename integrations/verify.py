"""Check a live ERP tenant for the facts no public source settles (issue 10, item 11).

`python manage.py verify_erp <slug>` runs these against an organization's real tenant,
with its stored credentials, through the connector `build_connector` makes: the same
pooled session, CA trust, timeouts and token code as a sync. Each check is one small
function whose docstring names the fact and where it comes from
(docs/erp/xledger.md and docs/erp/business-central.md, "Corrections" and
"Assumptions"); it answers confirmed, refuted or unknown with the evidence seen.

Evidence is built from status codes, the ERP's own error messages and the values read,
never from headers or request bodies, and everything printed passes through `redact`
with every secret the connector holds, as a second line of defence.

The checks call the connectors' internal helpers (`_graphql`, `_call`, `_collection`,
`_journal`, …) on purpose: a check must exercise the very code a sync runs, not a copy.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from integrations.clients import business_central as bc
from integrations.clients import xledger as xl
from integrations.clients.base import ConnectorError, Outcome, Posting, Settlement
from integrations.clients.http import CallFailed, Failure, host_of, redact
from integrations.clients.reading import day_of
from integrations.models import CategoryMapping, Integration

TEST_AMOUNT = Decimal("1.00")
TEST_CURRENCY = "NOK"  # both tenants are Norwegian; Business Central takes its own below
# Existing journal lines read to settle the filter-case fact without posting.
EXISTING_LINES = 50
# Rows a reconciliation check reads per query: enough to show values, cheap on a metered
# tenant (Xledger bills requests past the monthly allowance).
SAMPLE = 5
# A period no ledger holds entries in: a date filter that is applied answers nothing for it.
FAR_PAST = (date(1900, 1, 1), date(1900, 12, 31))
NO_ENTRIES = "this connector version does not read entries (reconciliation)"


class Verdict(enum.StrEnum):
    CONFIRMED = "confirmed"
    REFUTED = "refuted"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Check:
    """One answered question: what was asked, the answer, and what was seen."""

    erp: str
    name: str
    verdict: Verdict
    evidence: str

    def line(self) -> str:
        return f"{self.name}: {self.verdict} — {self.evidence}"

    def as_json(self) -> dict[str, str]:
        return {
            "erp": self.erp,
            "check": self.name,
            "verdict": str(self.verdict),
            "evidence": self.evidence,
        }


# Facts worth recording whichever way they go, because the connectors are built to be safe
# either way (they never ask for endCursor; they always look up upper-cased): a refutation
# of one of these is printed but does not fail the command.
INFORMATIONAL = frozenset(
    {"pageInfo endCursor", "externalDocumentNumber filter with a lower-case literal"}
)


def exit_code(checks: Iterable[Check]) -> int:
    """0 when nothing the connectors rely on is refuted, 1 when something is (unknown
    alone does not fail)."""
    return (
        1
        if any(c.verdict is Verdict.REFUTED and c.name not in INFORMATIONAL for c in checks)
        else 0
    )


# A check answers (verdict, evidence); the runner adds its name and redacts the words.
Answer = tuple[Verdict, str]


class Stop(Exception):
    """A check failed in a way that leaves every later check unable to tell anything.

    Carries the check's own answer; the runner marks the rest "unknown: not checked".
    """

    def __init__(self, verdict: Verdict, evidence: str) -> None:
        super().__init__(evidence)
        self.answer = (verdict, evidence)


# --- what every ERP shares ------------------------------------------------------------------


@dataclass
class Probe:
    """What the checks of one run share: the connector, the integration, what was read."""

    integration: Integration
    connector: Any
    reference: str  # VH-VERIFY-<MMDDhhmmss>: the post test's reference, and an absent one
    number: int  # the same digits as a number (Xledger's trRegNumber)
    today: date
    seen: dict[str, Any] = field(default_factory=dict)  # reads later checks reuse
    stopped: str = ""  # why the checks after a failed one were not asked

    @property
    def erp(self) -> str:
        return str(self.integration.get_connector_display())

    def secrets(self) -> list[str]:
        return _secrets_of(self.connector)


def stamp_of(now: datetime) -> str:
    """10 digits (MMDDhhmmss): VH-VERIFY-<stamp> fits Business Central's 20-character
    document number, and as a number it stays under 2**31 (a GraphQL Int)."""
    return timezone.localtime(now).strftime("%m%d%H%M%S")


def verification_reference(now: datetime) -> str:
    return f"VH-VERIFY-{stamp_of(now)}"


def new_probe(integration: Integration, connector: Any, now: datetime) -> Probe:
    return Probe(
        integration=integration,
        connector=connector,
        reference=verification_reference(now),
        number=int(stamp_of(now)),
        today=timezone.localtime(now).date(),
    )


def run_checks(
    probe: Probe, checks: list[tuple[str, Callable[[Probe], Answer]]]
) -> Iterator[Check]:
    """Run checks in order; after a Stop the rest are unknown, not asked (and not billed)."""
    for name, function in checks:
        if probe.stopped:
            yield Check(probe.erp, name, Verdict.UNKNOWN, f"not checked: {probe.stopped}")
            continue
        try:
            verdict, evidence = function(probe)
        except Stop as stop:
            verdict, evidence = stop.answer
            probe.stopped = f"{name} was {verdict}"
        except (CallFailed, ConnectorError) as error:
            # A check that did not expect this failure: it settles nothing.
            verdict, evidence = Verdict.UNKNOWN, failure_words(probe, error)
        yield Check(probe.erp, name, verdict, redact(evidence, probe.secrets()))


def failure_words(probe: Probe, error: CallFailed | ConnectorError | Failure) -> str:
    """A failed call in the connector's own secret-free words, with the status and ERP message."""
    if isinstance(error, ConnectorError):
        return redact(error.message, probe.secrets())
    failure = error.failure if isinstance(error, CallFailed) else error
    words = str(probe.connector.admin_message(failure))
    if failure.status and str(failure.status) not in words:
        words = f"HTTP {failure.status}: {words}"
    if failure.message and failure.message not in words:
        words += f" ({probe.erp} said: {failure.message})"
    return redact(words, probe.secrets())


def verification_posting(probe: Probe, currency: str) -> Posting:
    """One small balanced posting: 1.00 on the first mapped account against the payable one."""
    mapping = first_mapping(probe.integration)
    if mapping is None:  # the command refuses --post-test before this; kept for direct callers
        raise ValueError("the post test needs a category mapping and a payable account")
    return Posting(
        reference=probe.reference,
        posting_date=probe.today,
        amount=TEST_AMOUNT,
        currency=currency,
        expense_account=mapping.account_code,
        cost_center=mapping.cost_center_code,
        payable_account=probe.integration.payable_account,
        # No claimant: a subledger code must name an existing employee or supplier.
        claimant_reference="",
        claimant_name="verify_erp",
        description=f"Test entry from verify_erp ({probe.reference})",
        number=probe.number,
    )


def first_mapping(integration: Integration) -> CategoryMapping | None:
    if not integration.payable_account:
        return None
    return integration.mappings.order_by("category", "pk").first()


def _secrets_of(connector: Any) -> list[str]:
    """The stored secrets and any access token the process holds for them (never printed)."""
    config = connector.config
    found = list(config.secrets())
    try:
        if isinstance(connector, xl.XledgerConnector):
            token = xl._tokens.get(xl._token_key(config))
            if token is not None:
                found.append(token.access_token)
        else:
            app = bc._apps.get(bc._app_key(config))
            if app is not None:
                cache = app.token_cache
                kind = type(cache).CredentialType.ACCESS_TOKEN
                found += [str(item.get("secret", "")) for item in cache.search(kind)]
    except (AttributeError, TypeError):
        pass  # the connector's caches changed shape: the stored secrets still count
    return [s for s in found if s]


def _found_id(value: Any) -> str:
    """lookup() answers Found (newer connectors) or a bare id (older ones)."""
    erp_id = getattr(value, "erp_id", value)
    complete = getattr(value, "complete", True)
    return f"{erp_id}" + ("" if complete else " (incomplete)")


# --- Xledger --------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphQLAnswer:
    data: dict[str, Any]
    failure: Failure | None = None


def _ask(
    probe: Probe, query: str, operation: str, variables: dict[str, Any] | None = None
) -> GraphQLAnswer:
    """One read through the connector's own GraphQL call (token, session, logging)."""
    try:
        body, _status = probe.connector._graphql(query, variables or {}, operation, 1, False)
    except CallFailed as error:
        return GraphQLAnswer({}, error.failure)
    errors = body.get("errors")
    failure = xl.graphql_failure(errors, write=False) if errors else None
    return GraphQLAnswer(body.get("data") or {}, failure)


def _trial_verdict(failure: Failure) -> Verdict:
    """A GraphQL error in an HTTP 200 answer that is not about credentials, credits or rate
    is the schema saying no (unknown field, argument or type): refuted. Anything else (a
    5xx, a timeout, a rate limit) settles nothing."""
    if failure.status == 200 and failure.outcome is Outcome.PERMANENT:
        return Verdict.REFUTED
    return Verdict.UNKNOWN


def _refusal(probe: Probe, failure: Failure, field_name: str) -> Answer:
    verdict = _trial_verdict(failure)
    words = failure_words(probe, failure)
    if verdict is Verdict.REFUTED:
        shape = describe_query_field(probe, field_name)
        if shape:
            words += f"; introspection: {shape}"
    return verdict, words


def _edges(data: dict[str, Any], field_name: str) -> list[dict[str, Any]]:
    connection = data.get(field_name) or {}
    return [edge.get("node") or {} for edge in connection.get("edges") or []]


TYPE_FIELDS = """
query VerifyType($name: String!) {
  __type(name: $name) { name kind fields { name } inputFields { name } }
}
"""

QUERY_FIELDS = """
query VerifyQueryFields {
  __schema { queryType { fields { name args { name type { ...T } } type { ...T } } } }
}
fragment T on __Type { name kind ofType { name kind ofType { name kind ofType { name } } } }
"""


def type_fields(probe: Probe, name: str) -> list[str] | None:
    """The field (or input field) names of a type by introspection; None if not answered."""
    answer = _ask(probe, TYPE_FIELDS, "introspection", {"name": name})
    described = answer.data.get("__type") if answer.failure is None else None
    if not described:
        return None
    fields = described.get("fields") or described.get("inputFields") or []
    return [str(f["name"]) for f in fields]


def _named(type_ref: dict[str, Any] | None) -> str:
    while type_ref and not type_ref.get("name"):
        type_ref = type_ref.get("ofType")
    return str((type_ref or {}).get("name") or "?")


def _query_fields(probe: Probe) -> list[dict[str, Any]] | None:
    """The schema's query fields (name, args, type) by introspection; None if not answered."""
    answer = _ask(probe, QUERY_FIELDS, "introspection")
    if answer.failure is not None:
        return None
    return ((answer.data.get("__schema") or {}).get("queryType") or {}).get("fields") or []


def describe_query_field(probe: Probe, field_name: str) -> str:
    """What the schema says a query field takes and returns, for a refutation's evidence."""
    fields = _query_fields(probe)
    if fields is None:
        return ""
    found = next((f for f in fields if f.get("name") == field_name), None)
    if found is None:
        return f"the schema has no query field {field_name}"
    args = []
    for arg in found.get("args") or []:
        type_name = _named(arg.get("type"))
        text = f"{arg['name']}: {type_name}"
        if arg["name"] == "filter" and (inputs := type_fields(probe, type_name)) is not None:
            text += " {" + ", ".join(inputs) + "}"
        args.append(text)
    returns = _named(found.get("type"))
    return f"{field_name}({', '.join(args)}) returns {returns}"


XL_ACCOUNTS = """
query VerifyAccounts {
  accounts(first: 5) { edges { node { dbId code } } pageInfo { hasNextPage } }
}
"""


def xledger_token(probe: Probe) -> Answer:
    """The token works: accounts are readable with it.

    Source: Xledger help centre (tokens are made per entity, with the rights chosen at
    creation; a demo token dies at the demo refresh); docs/erp/xledger.md,
    "Authentication".
    """
    answer = _ask(probe, XL_ACCOUNTS, "verify accounts")
    if answer.failure is not None:
        verdict = (
            Verdict.REFUTED if answer.failure.outcome is Outcome.AUTHENTICATION else Verdict.UNKNOWN
        )
        raise Stop(verdict, failure_words(probe, answer.failure))
    codes = [str(node.get("code")) for node in _edges(answer.data, "accounts")]
    if not codes:
        return Verdict.CONFIRMED, "accepted, but the entity answered no accounts"
    return Verdict.CONFIRMED, f"read {len(codes)} account(s): {', '.join(codes)}"


XL_END_CURSOR = """
query VerifyEndCursor {
  accounts(first: 1) { edges { cursor } pageInfo { hasNextPage endCursor } }
}
"""


def xledger_end_cursor(probe: Probe) -> Answer:
    """`pageInfo { endCursor }` exists (unconfirmed; the connector takes the last edge's cursor).

    Source: public clients select only `pageInfo { hasNextPage }` (xledger/graphql-samples
    Queries.cs; grasp-labs ds-provider-xledger-py-lib; FINTLabs fint-xledger-adapter).
    """
    names = type_fields(probe, "PageInfo")
    if names is not None:
        verdict = Verdict.CONFIRMED if "endCursor" in names else Verdict.REFUTED
        return verdict, f"introspection: PageInfo has {', '.join(names)}"
    answer = _ask(probe, XL_END_CURSOR, "verify endCursor")
    if answer.failure is not None:
        return _trial_verdict(answer.failure), failure_words(probe, answer.failure)
    page_info = (answer.data.get("accounts") or {}).get("pageInfo") or {}
    return (
        Verdict.CONFIRMED,
        f"introspection not answered; a query answered endCursor = {page_info.get('endCursor')!r}",
    )


XL_INT64STRING = """
query VerifyInt64String($kind: Int64String) {
  objectValues(first: 1, filter: {objectKindDbId: $kind}) { edges { node { dbId code } } }
}
"""


def xledger_int64string(probe: Probe) -> Answer:
    """The id scalar `Int64String` is accepted for `objectKindDbId`.

    Source: xledger/graphql-samples Queries.cs declares ids as `$dbId: Int64String!`;
    docs/erp/xledger.md, "Corrections".
    """
    kind = probe.integration.cost_center_kind_db_id
    value = str(kind if kind is not None else 0)
    answer = _ask(probe, XL_INT64STRING, "verify Int64String", {"kind": value})
    if answer.failure is not None:
        return _trial_verdict(answer.failure), failure_words(probe, answer.failure)
    count = len(_edges(answer.data, "objectValues"))
    return Verdict.CONFIRMED, f"objectValues took $kind: Int64String = {value!r}: {count} value(s)"


def xledger_gl_import_items_filter(probe: Probe) -> Answer:
    """`glImportItems(filter: {extIdentifier_in: [...]})` is accepted and applied (unconfirmed).

    The duplicate check before a resend depends on it: the query asked is the connector's
    own lookup query. Source: docs/erp/xledger.md,
    "Finding a voucher again (lookup)" (unconfirmed).
    """
    absent = f"{probe.reference}-ABSENT"
    try:
        nodes = list(probe.connector._import_items_by_reference([absent]))
    except CallFailed as error:
        return _refusal(probe, error.failure, "glImportItems")
    others = sorted(
        {str(n.get("extIdentifier")) for n in nodes if n.get("extIdentifier") != absent}
    )
    if others:
        return Verdict.REFUTED, (
            f"accepted but not applied: a reference that does not exist answered {len(nodes)} "
            f"item(s) with other references ({', '.join(others[:3])})"
        )
    return Verdict.CONFIRMED, "accepted; a reference that does not exist answered 0 items"


XL_TRANSACTIONS = """
query VerifyTransactions {
  transactions(first: 5, filter: {extIdentifier_in: [REFERENCE]}) { edges { node { dbId } } }
}
"""


def xledger_transactions_filter(probe: Probe) -> Answer:
    """`transactions(filter: {extIdentifier_in: [...]})` is accepted and applied (unconfirmed).

    Used to confirm that an accepted import became a posted voucher (lookup and settle):
    the query asked is the connector's own. Source:
    docs/erp/xledger.md, "Finding a voucher again (lookup)".
    """
    absent = f"{probe.reference}-ABSENT"
    try:
        nodes = _connector_read(
            probe, "_transactions_by_reference", [absent], XL_TRANSACTIONS, "transactions"
        )
    except CallFailed as error:
        return _refusal(probe, error.failure, "transactions")
    if nodes:
        return Verdict.REFUTED, (
            f"accepted but not applied: a reference that does not exist answered "
            f"{len(nodes)} transaction(s)"
        )
    return Verdict.CONFIRMED, "accepted; a reference that does not exist answered 0 transactions"


XL_IMPORT_ERRORS = """
query VerifyImportErrors {
  glImportItemErrors(first: 5) { edges { node { transactionDbId errorLevel message } } }
}
"""


def xledger_import_item_errors(probe: Probe) -> Answer:
    """`glImportItemErrors` is readable with `transactionDbId errorLevel message` (unconfirmed
    shape; the connector also filters it by `transactionDbId_in`).

    A late rejection by the import job is read here (settle). Source: docs/erp/xledger.md,
    "Corrections" (the existence of glImportItemErrors).
    """
    try:
        # An id no import item has: the connector's own query, answering nothing.
        rows = _connector_read(
            probe, "_import_item_errors", ["0"], XL_IMPORT_ERRORS, "glImportItemErrors"
        )
    except CallFailed as error:
        return _refusal(probe, error.failure, "glImportItemErrors")
    if not rows:
        return Verdict.CONFIRMED, "readable with these fields; nothing listed for the id asked"
    first = rows[0]
    seen = f"errorLevel={first.get('errorLevel')!r}, message={str(first.get('message'))[:80]!r}"
    return Verdict.CONFIRMED, f"readable; {len(rows)} row(s), e.g. {seen}"


def _connector_read(
    probe: Probe, method: str, argument: list[str], fallback: str, field_name: str
) -> list[dict[str, Any]]:
    """Nodes from the connector's own query function; this module's query for a connector
    version without it. Raises CallFailed as the connector does."""
    function = getattr(probe.connector, method, None)
    if function is not None:
        return list(function(argument))
    query = fallback.replace("REFERENCE", json.dumps(argument[0]))
    answer = _ask(probe, query, f"verify {field_name}")
    if answer.failure is not None:
        raise CallFailed(answer.failure)
    return _edges(answer.data, field_name)


# --- Xledger: what `entries` (reconciliation, issue 15) reads ---------------------------------

TYPE_FIELD_TYPES = """
query VerifyFieldTypes($name: String!) {
  __type(name: $name) { name fields { name type { ...T } } }
}
fragment T on __Type { name kind ofType { name kind ofType { name kind ofType { name } } } }
"""


def _field_type(probe: Probe, type_name: str, field_name: str) -> str | None:
    """The named type of one field of a type by introspection; None if not answered."""
    answer = _ask(probe, TYPE_FIELD_TYPES, "introspection", {"name": type_name})
    described = answer.data.get("__type") if answer.failure is None else None
    for found in (described or {}).get("fields") or []:
        if found.get("name") == field_name:
            named = _named(found.get("type"))
            return named if named != "?" else None
    return None


def node_type(probe: Probe, field_name: str) -> str | None:
    """The node type of a Relay connection query field (e.g. Transaction for transactions):
    the query field's type, its `edges`' type, their `node`'s type."""
    found = next((f for f in _query_fields(probe) or [] if f.get("name") == field_name), None)
    connection = _named(found.get("type")) if found else "?"
    edge = _field_type(probe, connection, "edges") if connection != "?" else None
    return _field_type(probe, edge, "node") if edge else None


def _top_level(selection: str) -> list[str]:
    """The top-level field names of a GraphQL selection ("a b { c } d" → a, b, d)."""
    names, depth = [], 0
    for token in selection.replace("{", " { ").replace("}", " } ").split():
        if token == "{":
            depth += 1
        elif token == "}":
            depth -= 1
        elif depth == 0:
            names.append(token)
    return names


def _missing_fields(probe: Probe, field_name: str, selection: str) -> str:
    """For a refused selection: the node type's real field names and which asked are not."""
    type_name = node_type(probe, field_name)
    names = type_fields(probe, type_name) if type_name else None
    if type_name is None or names is None:
        return ""
    words = f"; introspection: {type_name} has {', '.join(names)}"
    missing = [name for name in _top_level(selection) if name not in names]
    if missing:
        words += f"; not among them: {', '.join(missing)}"
    return words


def _day(value: Any) -> date | None:
    try:
        return day_of(value)
    except ValueError:
        return None


def _span(period: tuple[date, date]) -> str:
    return f"{period[0].isoformat()}..{period[1].isoformat()}"


def _shown(value: Any) -> str:
    """A node's value for evidence: `{code}` objects as their code, long text cut."""
    if isinstance(value, dict) and set(value) == {"code"}:
        value = value["code"]
    return repr(value if not isinstance(value, str) else value[:40])


def _xledger_period_nodes(
    probe: Probe, field_name: str, selection: str, period: tuple[date, date] | None
) -> list[dict[str, Any]]:
    """The first page (SAMPLE nodes) of the connector's own reconciliation query, with its
    posted-date filter for `period`, or without one. Raises CallFailed as the connector does."""
    query = xl._period_query(field_name, selection, filtered=period is not None)
    variables: dict[str, Any] = {"first": SAMPLE, "after": None}
    if period is not None:
        variables |= {"from": period[0].isoformat(), "to": period[1].isoformat()}
    answer = _ask(probe, query, f"verify {field_name}", variables)
    if answer.failure is not None:
        raise CallFailed(answer.failure)
    return _edges(answer.data, field_name)


def _xledger_entry_fields(probe: Probe, field_name: str) -> Answer:
    """Shared by the two "fields read by entries" checks: the connector's selection, asked
    without a filter (so only the selection is tested), SAMPLE nodes kept for the next check."""
    entry_fields = getattr(probe.connector, "_entry_fields", None)
    if entry_fields is None:
        return Verdict.UNKNOWN, NO_ENTRIES
    selection = str(entry_fields())
    try:
        nodes = _xledger_period_nodes(probe, field_name, selection, None)
    except CallFailed as error:
        verdict, words = _trial_verdict(error.failure), failure_words(probe, error.failure)
        if verdict is Verdict.REFUTED:
            words += _missing_fields(probe, field_name, selection)
        return verdict, words
    probe.seen[field_name] = nodes
    if not nodes:
        return Verdict.CONFIRMED, (
            f"accepted ({selection}); the entity has no {field_name} to show their values"
        )
    values = ", ".join(f"{name}={_shown(value)}" for name, value in nodes[0].items())
    return Verdict.CONFIRMED, f"accepted; read {len(nodes)} {field_name}, e.g. {values}"


def xledger_transaction_fields(probe: Probe) -> Answer:
    """`transactions` nodes have the fields `entries` selects: extIdentifier, trRegNumber,
    account {code}, amount, currency, postedDate, glObjectN {code} (unconfirmed).

    Source: docs/erp/xledger.md, "Reading entries": a public client (grasp-labs,
    transactions/read/metadata.json) reads accountDbId, glObject1DbId…, currency_dbId and
    header { postedDate } instead. A refusal shows the real field names by introspection.
    """
    return _xledger_entry_fields(probe, "transactions")


def xledger_import_item_fields(probe: Probe) -> Answer:
    """`glImportItems` nodes have the fields `entries` selects (unconfirmed, as for
    transactions; the input side of these fields is what addGLImportItems takes).

    Source: docs/erp/xledger.md, "Reading entries".
    """
    return _xledger_entry_fields(probe, "glImportItems")


def _xledger_date_filter(probe: Probe, field_name: str) -> Answer:
    """Shared by the two posted-date checks: accepted, and applied both ways (a far-past
    period answers nothing; the day of a node read before answers that day's nodes only)."""
    entry_fields = getattr(probe.connector, "_entry_fields", None)
    if entry_fields is None:
        return Verdict.UNKNOWN, NO_ENTRIES
    seen: list[dict[str, Any]] | None = probe.seen.get(field_name)
    # With the connector's selection not read (the check before), dbId alone still tests
    # the filter.
    selection = str(entry_fields()) if seen is not None else "dbId"
    try:
        past = _xledger_period_nodes(probe, field_name, selection, FAR_PAST)
    except CallFailed as error:
        return _date_filter_refusal(probe, error.failure, field_name)
    if past:
        dates = ", ".join(sorted({str(n.get("postedDate")) for n in past})[:3])
        return Verdict.REFUTED, (
            f"accepted but not applied: {_span(FAR_PAST)} answered {len(past)} {field_name}"
            + (f" posted {dates}" if "postedDate" in past[0] else "")
        )
    far = f"{_span(FAR_PAST)} answered 0 {field_name}"
    dated = next((n for n in seen or [] if _day(n.get("postedDate"))), None)
    if dated is None:
        why = (
            "the connector's fields were not read (see the check above)"
            if seen is None
            else f"the entity has no {field_name}"
            if not seen
            else f"the {field_name} read have no postedDate"
        )
        return Verdict.CONFIRMED, (
            f"accepted; {far}; whether it keeps a day's {field_name} is not shown: {why}"
        )
    return _xledger_day_kept(probe, field_name, selection, dated, far)


def _xledger_day_kept(
    probe: Probe, field_name: str, selection: str, dated: dict[str, Any], far: str
) -> Answer:
    day = _day(dated["postedDate"])
    assert day is not None  # chosen for it
    inside = _xledger_period_nodes(probe, field_name, selection, (day, day))
    if not inside:
        return Verdict.REFUTED, (
            f"accepted but it keeps nothing: {_span((day, day))} answered 0 {field_name}, "
            f"although {dated.get('dbId')} is posted {dated['postedDate']!r}: entries would "
            "miss every entry"
        )
    others = sorted({str(n.get("postedDate")) for n in inside if _day(n.get("postedDate")) != day})
    if others:
        return Verdict.REFUTED, (
            f"accepted but not applied: {_span((day, day))} answered {field_name} posted "
            + ", ".join(others[:3])
        )
    return Verdict.CONFIRMED, (
        f"accepted and applied: {far}; {_span((day, day))} answered {len(inside)}, "
        "all posted that day"
    )


def _date_filter_refusal(probe: Probe, failure: Failure, field_name: str) -> Answer:
    """Refused: the schema's filter fields, and whether entries' fallback takes it so."""
    verdict, words = _refusal(probe, failure, field_name)
    if verdict is Verdict.REFUTED:
        if xl._filter_refused(failure, xl.DATE_FILTER_FIELDS):
            words += (
                f"; entries reads every {field_name} instead and keeps the period itself "
                "(correct, but each reading costs more requests)"
            )
        else:
            words += (
                "; entries does not take this answer for a refused filter and fails instead "
                "of reading everything"
            )
    return verdict, words


def xledger_transactions_dates(probe: Probe) -> Answer:
    """`transactions(filter: {postedDate_gte, postedDate_lte})` is accepted and applied
    (unconfirmed; sandbox assumption xledger_posted_date_filter).

    The query asked is the connector's own (`_period_query`). Source: docs/erp/xledger.md,
    "Reading entries" (the documented suffix style; no public query shows these two).
    """
    return _xledger_date_filter(probe, "transactions")


def xledger_import_items_dates(probe: Probe) -> Answer:
    """`glImportItems(filter: {postedDate_gte, postedDate_lte})` is accepted and applied
    (unconfirmed; sandbox assumption xledger_posted_date_filter).

    Source: docs/erp/xledger.md, "Reading entries".
    """
    return _xledger_date_filter(probe, "glImportItems")


XLEDGER_CHECKS: list[tuple[str, Callable[[Probe], Answer]]] = [
    ("token works (accounts readable)", xledger_token),
    ("pageInfo endCursor", xledger_end_cursor),
    ("Int64String for objectKindDbId", xledger_int64string),
    ("glImportItems extIdentifier_in", xledger_gl_import_items_filter),
    ("transactions extIdentifier_in", xledger_transactions_filter),
    ("glImportItemErrors transactionDbId errorLevel message", xledger_import_item_errors),
    ("transactions fields read by entries", xledger_transaction_fields),
    ("transactions postedDate_gte postedDate_lte", xledger_transactions_dates),
    ("glImportItems fields read by entries", xledger_import_item_fields),
    ("glImportItems postedDate_gte postedDate_lte", xledger_import_items_dates),
]

XLEDGER_WARNING = (
    "The post test sends ONE balanced voucher to Xledger: {amount} {currency} on account "
    "{expense} against {payable}, reference {reference}. Xledger's API cannot delete it: "
    "it stays in the ledger until someone reverses or deletes it in Xledger."
)


def xledger_post_test(probe: Probe) -> list[Check]:
    """Post one voucher through the connector's post(), then lookup() and settle() it."""
    connector = probe.connector
    posting = verification_posting(probe, TEST_CURRENCY)
    result = connector.post([posting])[0]
    said = (
        " ".join(p for p in (str(result.note or ""), result.message) if p) or result.response_body
    )
    evidence = (
        f"outcome {result.outcome}, HTTP {result.response_status}, dbId {result.erp_id or '-'}"
    )
    if said:
        evidence += f": {said[:300]}"
    if result.outcome is Outcome.SUCCEEDED:
        verdict = Verdict.CONFIRMED
    elif result.outcome is Outcome.PERMANENT:
        verdict = Verdict.REFUTED
    else:
        verdict = Verdict.UNKNOWN
    checks = [_checked(probe, "post-test voucher posted", verdict, evidence)]
    if verdict is Verdict.REFUTED:
        return checks  # refused as a whole: nothing was stored
    # Also after an uncertain send: the lookup says whether it arrived.
    checks.append(_checked(probe, *_xledger_lookup(probe, posting.reference)))
    if result.outcome is Outcome.SUCCEEDED:
        checks.append(_checked(probe, *_xledger_settle(probe, posting.reference, result.erp_id)))
    return checks


def _xledger_lookup(probe: Probe, reference: str) -> tuple[str, Verdict, str]:
    name = "post-test lookup finds the voucher"
    try:
        found = probe.connector.lookup([reference])
    except ConnectorError as error:
        return name, Verdict.UNKNOWN, failure_words(probe, error)
    if reference in found:
        return (
            name,
            Verdict.CONFIRMED,
            f"lookup answered {reference} → {_found_id(found[reference])}",
        )
    return (
        name,
        Verdict.REFUTED,
        (
            f"lookup did not find {reference} just after it was posted: a resend after an "
            "uncertain send would duplicate it"
        ),
    )


def _xledger_settle(probe: Probe, reference: str, erp_id: str) -> tuple[str, Verdict, str]:
    name = "post-test settle"
    settle = getattr(probe.connector, "settle", None)
    if settle is None:
        return name, Verdict.UNKNOWN, "this connector version has no settle()"
    try:
        settled = settle({reference: erp_id}).get(reference)
    except ConnectorError as error:
        return name, Verdict.UNKNOWN, failure_words(probe, error)
    if settled is None:
        return name, Verdict.UNKNOWN, "settle() answered nothing for the reference"
    words = f"settle answered {settled.state}" + (f": {settled.message}" if settled.message else "")
    if settled.erp_id:
        words += f" (id {settled.erp_id})"
    if settled.state == Settlement.POSTED:
        return name, Verdict.CONFIRMED, words
    if settled.state == Settlement.REJECTED:
        return name, Verdict.REFUTED, words
    return name, Verdict.UNKNOWN, words + "; the import job has not decided yet, ask again later"


def _checked(probe: Probe, name: str, verdict: Verdict, evidence: str) -> Check:
    return Check(probe.erp, name, verdict, redact(evidence, probe.secrets()))


# --- Business Central -----------------------------------------------------------------------

FILTER_CASE = "externalDocumentNumber filter with a lower-case literal"
MANUAL_NOS = (
    "The API does not show number series. In Business Central open General Journals, "
    "choose the batch {journal} of the default template, open its No. Series and check "
    'that "Manual Nos." is on (or clear the batch\'s No. Series): otherwise posting the '
    "journal fails on our document numbers"
)


def bc_token(probe: Probe) -> Answer:
    """Microsoft Entra ID issues a token for the client credentials.

    Source: docs/erp/business-central.md, "Authentication" (msal, client credentials,
    scope https://api.businesscentral.dynamics.com/.default).
    """
    try:
        probe.connector._token()
    except CallFailed as error:
        verdict = (
            Verdict.REFUTED if error.failure.outcome is Outcome.AUTHENTICATION else Verdict.UNKNOWN
        )
        raise Stop(verdict, failure_words(probe, error)) from None
    config = probe.connector.config
    return Verdict.CONFIRMED, f"{host_of(config.authority)} issued a token for {config.scope}"


def bc_app_enabled(probe: Probe) -> Answer:
    """The API answers with the token: the application is added and enabled in Business
    Central's "Microsoft Entra Applications" page, with permission sets.

    Source: automation-apis-using-s2s-authentication.md (Microsoft Learn); without it every
    call answers 401/403 although the token was issued.
    """
    try:
        companies = list(probe.connector._collection("companies"))
    except CallFailed as error:
        if error.failure.status in (401, 403):
            raise Stop(
                Verdict.REFUTED,
                f"HTTP {error.failure.status} after a token was issued"
                + (f" ({probe.erp} said: {error.failure.message})" if error.failure.message else "")
                + ": add the application in Business Central's Microsoft Entra Applications "
                "page, set its state to Enabled and give it permission sets",
            ) from None
        raise Stop(Verdict.UNKNOWN, failure_words(probe, error)) from None
    probe.seen["companies"] = companies
    return Verdict.CONFIRMED, f"GET companies answered {len(companies)} company(ies)"


def bc_company(probe: Probe) -> Answer:
    """The configured company exists in the environment.

    Source: docs/erp/business-central.md, "Endpoint" (GET /companies lists id, name,
    displayName).
    """
    wanted = probe.connector.config.company_id.lower()
    companies = probe.seen.get("companies") or []
    company = next((c for c in companies if str(c.get("id", "")).lower() == wanted), None)
    if company is None:
        names = ", ".join(f"{c.get('name')} ({c.get('id')})" for c in companies[:5]) or "none"
        raise Stop(Verdict.REFUTED, f"no company with id {wanted}; the environment has: {names}")
    return Verdict.CONFIRMED, f"company {company.get('name') or company.get('displayName')}"


def bc_journal(probe: Probe) -> Answer:
    """The configured journal is listed by `journals`, i.e. it is a batch of the default
    general journal template.

    Source: page 30016 "APIV2 - Journals" lists only that template's batches.
    """
    code = probe.integration.journal_code
    journals = probe.connector._journals()
    listed = ", ".join(j.code for j in journals[:10]) or "none"
    match = next((j for j in journals if j.code.upper() == code.upper()), None) if code else None
    if match is None:
        return Verdict.REFUTED, (
            f"journal {code or '(none configured)'} is not listed (journals lists: {listed}); "
            "create it as a batch of the default general journal template"
        )
    return Verdict.CONFIRMED, f"journals lists {match.code} ({match.name})"


def _accounts(probe: Probe) -> list[dict[str, Any]]:
    if "accounts" not in probe.seen:
        path = f"{probe.connector._company_path}/accounts"
        probe.seen["accounts"] = list(probe.connector._collection(path))
    return probe.seen["accounts"]


def bc_account_type(probe: Probe) -> Answer:
    """Accounts carry `accountType` (Posting, Heading, Total, Begin-Total, End-Total).

    Source: api-reference dynamics_account.md; only Posting accounts take journal lines.
    """
    rows = _accounts(probe)
    if not rows:
        return Verdict.UNKNOWN, "the company answered no accounts"
    types: dict[str, int] = {}
    for row in rows:
        if "accountType" in row:
            kind = str(row["accountType"])
            types[kind] = types.get(kind, 0) + 1
    if not types:
        return (
            Verdict.REFUTED,
            f"{len(rows)} accounts without accountType; fields: {', '.join(sorted(rows[0]))}",
        )
    seen = ", ".join(f"{kind} ({n})" for kind, n in sorted(types.items()))
    return Verdict.CONFIRMED, f"{len(rows)} accounts; accountType values: {seen}"


def bc_mapped_accounts(probe: Probe) -> Answer:
    """The mapped expense accounts and the payable account can take journal lines: they
    exist, are Posting accounts and are not blocked.

    Source: api-reference dynamics_account.md (accountType); page 30049 "APIV2 -
    JournalLines" refuses an unknown account; a blocked account is refused on posting.
    """
    integration = probe.integration
    codes = sorted(
        {m.account_code for m in integration.mappings.all()}
        | ({integration.payable_account} if integration.payable_account else set())
    )
    if not codes:
        return Verdict.UNKNOWN, "no account is mapped yet"
    by_number = {str(row.get("number")): row for row in _accounts(probe)}
    problems, fine = [], []
    for code in codes:
        row = by_number.get(code)
        if row is None:
            problems.append(f"{code} does not exist")
        elif row.get("blocked"):
            problems.append(f"{code} is blocked")
        elif "accountType" in row and row["accountType"] != "Posting":
            problems.append(f"{code} is a {row['accountType']} account")
        else:
            fine.append(code)
    if problems:
        return Verdict.REFUTED, "; ".join(problems) + "; map Posting accounts that are not blocked"
    if not any("accountType" in by_number[code] for code in fine):
        return (
            Verdict.UNKNOWN,
            f"{', '.join(fine)} exist and are not blocked; accountType is not shown",
        )
    return Verdict.CONFIRMED, f"{', '.join(fine)}: Posting accounts, not blocked"


def bc_dimension(probe: Probe) -> Answer:
    """The cost-center dimension exists (e.g. AVDELING).

    Source: docs/erp/business-central.md, "Reading master data" (dimensions: id, code,
    displayName).
    """
    code = probe.integration.cost_center_dimension
    dimensions = probe.connector._dimensions()
    found = bc._find_dimension(dimensions, code)
    if found is None:
        listed = ", ".join(d.code for d in dimensions[:10]) or "none"
        return Verdict.REFUTED, (
            f"dimension {code or '(none configured)'} is not among the dimensions ({listed})"
        )
    return Verdict.CONFIRMED, f"dimension {found.code} ({found.name})"


def _lines_by_reference(probe: Probe, literal_value: str) -> list[dict[str, Any]]:
    """Unposted lines of the configured journal whose externalDocumentNumber eq the literal."""
    connector = probe.connector
    expression = f"externalDocumentNumber eq {bc.odata_string(literal_value)}"
    path = f"{connector._company_path}/journals({connector._journal()})/journalLines"
    return list(connector._collection(path, bc.odata_filter_query(expression)))


def bc_filter_case(probe: Probe) -> Answer:
    """A `$filter` on `externalDocumentNumber` with a lower-case literal matches the
    upper-cased stored value (unconfirmed).

    Source: Code fields are stored upper-cased (docs/erp/business-central.md,
    "Corrections"); whether the literal is upper-cased too is not public. Without --post-test
    only an existing line with letters in its reference can settle it.
    """
    connector = probe.connector
    path = f"{connector._company_path}/journals({connector._journal()})/journalLines"
    _response, body = connector._call(
        "GET",
        f"{connector._api}/{path}?$top={EXISTING_LINES}",
        operation="GET journalLines",
        count=1,
        write=False,
    )
    rows = (body.get("value") or []) if isinstance(body, dict) else []
    stored = next(
        (
            str(r["externalDocumentNumber"])
            for r in rows
            if r.get("externalDocumentNumber")
            and str(r["externalDocumentNumber"]).swapcase() != str(r["externalDocumentNumber"])
        ),
        None,
    )
    if stored is None:
        return Verdict.UNKNOWN, (
            f"no unposted line in journal {probe.integration.journal_code} has a reference "
            "with letters; run with --post-test to settle it"
        )
    return _case_verdict(probe, stored)


def _case_verdict(probe: Probe, stored: str) -> Answer:
    literal_value = stored.lower() if stored != stored.lower() else stored.swapcase()
    found = _lines_by_reference(probe, literal_value)
    matched = [r for r in found if str(r.get("externalDocumentNumber")) == stored]
    if matched:
        return (
            Verdict.CONFIRMED,
            f"the literal '{literal_value}' found the line stored as '{stored}'",
        )
    return Verdict.REFUTED, (
        f"the literal '{literal_value}' found nothing for the line stored as '{stored}': "
        "look up with the upper-cased reference"
    )


def bc_manual_nos(probe: Probe) -> Answer:
    """The journal batch's number series allows manual numbers ("Manual Nos.").

    Source: docs/erp/business-central.md, "Corrections": a series without Manual
    Nos. makes posting the journal fail on a documentNumber that is not its next number.
    Number series cannot be read through API v2.0, so this is always unknown.
    """
    return Verdict.UNKNOWN, MANUAL_NOS.format(journal=probe.integration.journal_code or "(none)")


# --- Business Central: what `entries` (reconciliation, issue 15) reads ---------------------


def _first_page(probe: Probe, path: str, query: str) -> list[dict[str, Any]]:
    """One page of at most SAMPLE rows, through the connector's own paging call."""
    return next(iter(probe.connector._pages(path, query, SAMPLE)), [])


def _bc_period_rows(
    probe: Probe, path: str, period: tuple[date, date], prefix: str
) -> list[dict[str, Any]]:
    """The first page of the connector's own reconciliation query (`_period_query`)."""
    return _first_page(probe, path, probe.connector._period_query(*period, prefix))


def _bc_read_refused(probe: Probe, error: CallFailed) -> Answer:
    failure = error.failure
    verdict = Verdict.REFUTED if failure.outcome is Outcome.PERMANENT else Verdict.UNKNOWN
    return verdict, failure_words(probe, error)


def _journal_lines_path(probe: Probe) -> str:
    connector = probe.connector
    return f"{connector._company_path}/journals({connector._journal()})/journalLines"


def _bc_period_filter(probe: Probe, path: str, rows_are: str) -> Answer:
    """Shared by the two `$filter` checks: the connector's query is accepted, and applied
    to both halves (a prefix nobody has and a far-past period answer nothing; an existing
    row's own document number and day answer it)."""
    if not hasattr(probe.connector, "_period_query"):
        return Verdict.UNKNOWN, NO_ENTRIES
    absent = f"{probe.reference}-ABSENT"
    try:
        sample = _first_page(probe, path, f"$top={SAMPLE}")
        row = next(
            (r for r in sample if r.get("documentNumber") and _day(r.get("postingDate"))), None
        )
        if row is None:
            found = _bc_period_rows(probe, path, FAR_PAST, absent)
            if found:
                return Verdict.REFUTED, (
                    f"accepted but not applied: the prefix {absent} in {_span(FAR_PAST)} "
                    f"answered {len(found)} row(s)"
                )
            return Verdict.CONFIRMED, f"accepted; there are no {rows_are} to show it is applied"
        return _bc_applied(probe, path, rows_are, row, absent)
    except CallFailed as error:
        return _bc_read_refused(probe, error)


def _bc_applied(probe: Probe, path: str, rows_are: str, row: dict[str, Any], absent: str) -> Answer:
    document = str(row["documentNumber"]).upper()
    day = _day(row["postingDate"])
    assert day is not None  # chosen for it
    own = _bc_period_rows(probe, path, (day, day), document)
    asked = f"startswith '{document}' on {day.isoformat()}"
    if not own:
        return Verdict.REFUTED, (
            f"accepted but it keeps nothing: {asked} answered 0 {rows_are}, although one of "
            "them is stored so: entries would miss every entry"
        )
    strays = [
        f"{r.get('documentNumber')} {r.get('postingDate')}"
        for r in own
        if not str(r.get("documentNumber", "")).upper().startswith(document)
        or _day(r.get("postingDate")) != day
    ]
    if strays:
        return (
            Verdict.REFUTED,
            f"accepted but not applied: {asked} answered {', '.join(strays[:3])}",
        )
    other_prefix = _bc_period_rows(probe, path, (day, day), absent)
    other_days = _bc_period_rows(probe, path, FAR_PAST, document)
    if other_prefix or other_days:
        half = "the prefix" if other_prefix else "the period"
        return Verdict.REFUTED, (
            f"accepted but {half} is not applied: "
            + (f"the prefix {absent}" if other_prefix else f"{_span(FAR_PAST)}")
            + f" answered {len(other_prefix or other_days)} row(s)"
        )
    return Verdict.CONFIRMED, (
        f"accepted and applied: {asked} answered {len(own)} row(s); the prefix "
        f"{absent} on that day and {_span(FAR_PAST)} answered 0"
    )


def bc_journal_lines_filter(probe: Probe) -> Answer:
    """`journalLines?$filter=startswith(documentNumber,'…') and postingDate ge … and
    postingDate le …` is accepted and applied (documented).

    The query asked is the connector's own (`_period_query`, with its `$expand`). Source:
    webservices use-filter-expressions-in-odata-uris.md (startswith, ge, le);
    docs/erp/business-central.md, "Reading entries".
    """
    return _bc_period_filter(probe, _journal_lines_path(probe), "journal lines")


def bc_ledger_entries_filter(probe: Probe) -> Answer:
    """The same `$filter` on `generalLedgerEntries` is accepted and applied (documented).

    Source: as for journal lines; Microsoft's consolidation reads generalLedgerEntries so
    (BCApps, "Import Consolidation from API").
    """
    path = f"{probe.connector._company_path}/generalLedgerEntries"
    return _bc_period_filter(probe, path, "G/L entries")


def bc_dimension_expand(probe: Probe) -> Answer:
    """`$expand=dimensionSetLines` is accepted on journalLines and generalLedgerEntries and
    brings each row's dimension set lines (documented).

    Source: api-reference dynamics_journalline.md and dynamics_generalledgerentry.md
    (navigation property dimensionSetLines); docs/erp/business-central.md, "Reading entries".
    """
    if not hasattr(probe.connector, "_period_query"):
        return Verdict.UNKNOWN, NO_ENTRIES
    said = []
    paths = (
        ("journalLines", _journal_lines_path(probe)),
        ("generalLedgerEntries", f"{probe.connector._company_path}/generalLedgerEntries"),
    )
    for name, path in paths:
        try:
            rows = _first_page(probe, path, f"$top={SAMPLE}&$expand={bc.DIMENSIONS}")
        except CallFailed as error:
            verdict, words = _bc_read_refused(probe, error)
            return verdict, f"{name}: {words}"
        without = [r for r in rows if not isinstance(r.get(bc.DIMENSIONS), list)]
        if without:
            return Verdict.REFUTED, (
                f"{name}: accepted, but {len(without)} of {len(rows)} row(s) carry no "
                f"{bc.DIMENSIONS}"
            )
        said.append(f"{name}: {_expanded(rows)}")
    return Verdict.CONFIRMED, "; ".join(said)


def _expanded(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "accepted, no rows to show it"
    lines = [line for row in rows for line in row[bc.DIMENSIONS] if isinstance(line, dict)]
    example = next((f", e.g. {line.get('code')}={line.get('valueCode')}" for line in lines), "")
    return f"{len(rows)} row(s) with {bc.DIMENSIONS} ({len(lines)} line(s){example})"


BC_CHECKS: list[tuple[str, Callable[[Probe], Answer]]] = [
    ("token issued", bc_token),
    ("application enabled in Business Central (API answers)", bc_app_enabled),
    ("company exists", bc_company),
    ("journal listed by journals (batch of the default general journal template)", bc_journal),
    ("accounts carry accountType", bc_account_type),
    ("mapped accounts take journal lines", bc_mapped_accounts),
    ("cost-center dimension exists", bc_dimension),
    (FILTER_CASE, bc_filter_case),
    ("journal number series allows manual numbers", bc_manual_nos),
    ("journalLines startswith(documentNumber) and postingDate ge/le", bc_journal_lines_filter),
    (
        "generalLedgerEntries startswith(documentNumber) and postingDate ge/le",
        bc_ledger_entries_filter,
    ),
    ("$expand=dimensionSetLines on journalLines and generalLedgerEntries", bc_dimension_expand),
]


def bc_post_test(probe: Probe) -> list[Check]:
    """One journal line, its dimension set line, two read-backs, then DELETE it again."""
    connector = probe.connector
    posting = verification_posting(probe, connector.config.local_currency)
    lines_path = f"{connector._company_path}/journals({connector._journal()})/journalLines"
    created, line_id, maybe_made = _bc_create_line(probe, posting, lines_path)
    checks = [created]
    if not (line_id or maybe_made):
        return checks  # refused: nothing to read back or delete
    etag = ""
    try:
        if line_id:
            checks.append(_bc_dimension_line(probe, posting, line_id))
        upper = _lines_by_reference(probe, probe.reference.upper())
        own = [r for r in upper if not line_id or str(r.get("id")) == line_id]
        if own:
            # After an uncertain POST this is how the line is found, so it is still deleted.
            line_id = line_id or str(own[0].get("id"))
            etag = str(own[0].get("@odata.etag") or "")  # fresh: the dimension changed it
            checks.append(
                _bc_filter_case_on(probe, line_id, str(own[0].get("externalDocumentNumber")))
            )
        checks.append(
            _checked(
                probe,
                "post-test upper-case filter finds the line",
                Verdict.CONFIRMED if own else Verdict.REFUTED,
                f"the literal '{probe.reference.upper()}' found {len(own)} line(s)"
                + ("" if own else ": the duplicate check before a resend would miss a line"),
            )
        )
    except CallFailed as error:
        checks.append(_checked(probe, "post test", Verdict.UNKNOWN, failure_words(probe, error)))
    finally:
        if line_id:
            checks.append(_bc_delete(probe, lines_path, line_id, etag))
    return checks


def _bc_filter_case_on(probe: Probe, line_id: str, stored: str) -> Check:
    literal_value = probe.reference.lower()
    found = any(str(r.get("id")) == line_id for r in _lines_by_reference(probe, literal_value))
    return _checked(
        probe,
        FILTER_CASE,
        Verdict.CONFIRMED if found else Verdict.REFUTED,
        f"the literal '{literal_value}' "
        + ("found" if found else "found nothing for")
        + f" the test line stored as '{stored}'"
        + ("" if found else ": look up with the upper-cased reference"),
    )


def _bc_create_line(probe: Probe, posting: Posting, lines_path: str) -> tuple[Check, str, bool]:
    """POST the line: its check, the new id, and whether a failed POST may have made it."""
    connector = probe.connector
    name = "post-test journal line created"
    body = bc.journal_line_body(posting)
    try:
        response, line = connector._call(
            "POST",
            f"{connector._api}/{lines_path}",
            json_body=body,
            operation="POST journalLines",
            count=1,
            write=True,
        )
    except CallFailed as error:
        failure = error.failure
        verdict = Verdict.REFUTED if failure.outcome is Outcome.PERMANENT else Verdict.UNKNOWN
        uncertain = failure.outcome is Outcome.UNCERTAIN
        # Business Central's messages do not always name the value they refused.
        sent = (
            f"; sent account {body['accountNumber']} against {body['balancingAccountNumber']}, "
            f"amount {body['amount']}, document {body['documentNumber']}"
        )
        return _checked(probe, name, verdict, failure_words(probe, error) + sent), "", uncertain
    shown = ("lineNumber", "accountNumber", "amount", "documentNumber", "externalDocumentNumber")
    fields = ", ".join(f"{key}={line.get(key)!r}" for key in shown)
    evidence = f"HTTP {response.status_code}, id {line.get('id')}, {fields}"
    return _checked(probe, name, Verdict.CONFIRMED, evidence), str(line.get("id") or ""), True


def _bc_dimension_line(probe: Probe, posting: Posting, line_id: str) -> Check:
    connector = probe.connector
    name = "post-test dimension set line added"
    dimension = connector.config.cost_center_dimension
    if not (dimension and posting.cost_center):
        return _checked(
            probe, name, Verdict.UNKNOWN, "skipped: no cost-center dimension or mapped cost center"
        )
    try:
        response, added = connector._call(
            "POST",
            f"{connector._api}/{connector._company_path}/journalLines({line_id})/dimensionSetLines",
            json_body={"code": dimension, "valueCode": posting.cost_center},
            operation="POST dimensionSetLines",
            count=1,
            write=True,
        )
    except CallFailed as error:
        failure = error.failure
        verdict = Verdict.REFUTED if failure.outcome is Outcome.PERMANENT else Verdict.UNKNOWN
        return _checked(probe, name, verdict, failure_words(probe, error))
    return _checked(
        probe,
        name,
        Verdict.CONFIRMED,
        f"HTTP {response.status_code}, {added.get('code')} = {added.get('valueCode')} "
        f"on line {line_id}",
    )


def _bc_delete(probe: Probe, lines_path: str, line_id: str, etag: str) -> Check:
    """DELETE the test line (If-Match is required by the API reference), then read it again."""
    connector = probe.connector
    name = "post-test line deleted"
    by_hand = (
        f"; delete the line with document number {probe.reference} from journal "
        f"{probe.integration.journal_code} by hand"
    )
    try:
        response, _ = connector._call(
            "DELETE",
            f"{connector._api}/{lines_path}({line_id})",
            headers={"If-Match": etag or "*"},
            operation="DELETE journalLines",
            count=1,
            write=True,
        )
        left = _lines_by_reference(probe, probe.reference.upper())
    except CallFailed as error:
        return _checked(probe, name, Verdict.REFUTED, failure_words(probe, error) + by_hand)
    if any(str(r.get("id")) == line_id for r in left):
        return _checked(
            probe,
            name,
            Verdict.REFUTED,
            f"HTTP {response.status_code}, but the line is still there{by_hand}",
        )
    return _checked(
        probe,
        name,
        Verdict.CONFIRMED,
        f"HTTP {response.status_code}; a read afterwards finds no line {probe.reference}",
    )


# --- the run --------------------------------------------------------------------------------


def verify(
    integration: Integration, *, post_test: bool = False, now: datetime | None = None
) -> list[Check]:
    """Every check for the integration's ERP, and the post test when asked for."""
    connector = integration.build_connector()
    probe = new_probe(integration, connector, now or timezone.now())
    try:
        if integration.connector == Integration.Connector.XLEDGER:
            checks = list(run_checks(probe, XLEDGER_CHECKS))
            if post_test:
                checks += _post_test(probe, xledger_post_test)
        else:
            # With --post-test the test line settles the filter-case fact instead.
            table = [c for c in BC_CHECKS if not (post_test and c[0] == FILTER_CASE)]
            checks = list(run_checks(probe, table))
            if post_test:
                checks += _post_test(probe, bc_post_test)
                if not any(c.name == FILTER_CASE for c in checks):
                    words = "not settled: the post test has no line to read back (see above)"
                    checks.append(Check(probe.erp, FILTER_CASE, Verdict.UNKNOWN, words))
        return checks
    finally:
        connector.close()


def _post_test(probe: Probe, test: Callable[[Probe], list[Check]]) -> list[Check]:
    """The post test, unless a read-only check showed it cannot reach the ledger."""
    if probe.stopped:
        words = f"not run: {probe.stopped}"
        return [Check(probe.erp, "post test", Verdict.UNKNOWN, words)]
    try:
        return test(probe)
    except (CallFailed, ConnectorError) as error:
        # Failed before anything was written (the journal's id could not be read).
        return [Check(probe.erp, "post test", Verdict.UNKNOWN, failure_words(probe, error))]
