"""Reading what an ERP holds page by page (reconciliation, issue 15): the parts both
connectors share."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from .base import ErpEntry

Row = TypeVar("Row")

TWO_PLACES = Decimal("0.01")


def folded_pages(
    pages: Iterable[list[Row]],
    key: Callable[[Row], Hashable],
    fold: Callable[[list[Row]], ErpEntry | None],
) -> Iterator[list[ErpEntry]]:
    """One entry per run of consecutive rows with the same key, a page at a time.

    A posting is several ledger rows (expense debit, payable credit) written one after the
    other, and a page may end between them: the last run of each page is held back until
    the next page shows whether it goes on. A key that comes back later, after other rows,
    is another posting under the same reference (posted twice, or keyed by hand): it is a
    second entry, which is what reconciliation must see.
    """
    held: list[Row] = []
    for rows in pages:
        runs = _runs([*held, *rows], key)
        held = runs.pop() if runs else []
        page = [entry for run in runs if (entry := fold(run)) is not None]
        if page:
            yield page
    if held and (last := fold(held)) is not None:
        yield [last]


def _runs(rows: list[Row], key: Callable[[Row], Hashable]) -> list[list[Row]]:
    runs: list[list[Row]] = []
    for row in rows:
        if runs and key(runs[-1][-1]) == key(row):
            runs[-1].append(row)
        else:
            runs.append([row])
    return runs


def in_period(reference: str, posting_date: date, start: date, end: date, prefix: str) -> bool:
    """Checked again on our side: a filter the ERP ignored must not widen what we report."""
    return reference.startswith(prefix) and start <= posting_date <= end


def amount_of(value: object) -> Decimal:
    """An ERP's amount (a JSON number, or Xledger's decimal string) as an exact Decimal.

    A JSON number arrives as a float; its shortest repr is the decimal the ERP wrote.
    Raises ValueError for anything that is not a finite number.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise ValueError(f"not an amount: {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return amount


def day_of(value: object) -> date:
    """`YYYY-MM-DD` (or a timestamp starting with it) as a date; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"not a date: {value!r}")
    return date.fromisoformat(value[:10])
