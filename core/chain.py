"""Tamper evidence: each audit row carries a hash chained to the previous row of its
organization, so editing or deleting a row behind the application's back breaks
the chain at that row, and `verify_chain` names it (S8.6).

The hash covers the row's content as canonical JSON. It is computed in Python,
not in the database, so that it is the same on PostgreSQL and SQLite and an
auditor can recompute it from an export.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, cast

from django.db import models, transaction
from django.utils import timezone

from core import bulk

GENESIS = "0" * 64
CHUNK = 5000  # rows fetched at a time while walking a chain


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


# The canonical form: what json.dumps(..., sort_keys=True, ensure_ascii=False,
# separators=(",", ":"), default=str) writes, with the encoder built once, not per row.
_CANONICAL = json.JSONEncoder(
    sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
).encode


def digest(prev_hash: str, content: dict[str, Any]) -> str:
    canonical = _CANONICAL({key: _plain(value) for key, value in content.items()})
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


class ChainedQuerySet(models.QuerySet["ChainedModel"]):
    """Rows are appended with their hashes; the chain's head is read under a lock."""

    def _link(self, rows: list[ChainedModel]) -> None:
        model = self.model
        now = timezone.now()
        heads: dict[int | None, str] = {}
        for row in rows:
            if row.created_at is None:
                row.created_at = now  # part of the hash, so fixed before it is computed
            org = row.organization_id
            if org not in heads:
                heads[org] = (
                    model.objects.filter(organization_id=org)
                    .order_by("-id")
                    .values_list("row_hash", flat=True)
                    .first()
                    or GENESIS
                )
            row.prev_hash = heads[org]
            row.row_hash = digest(row.prev_hash, row.chain_content())
            heads[org] = row.row_hash

    def bulk_create(self, objs: Iterable[ChainedModel], *args, **kwargs):
        rows = list(objs)
        # No savepoint of its own (as Django's bulk_create): a failed append fails the
        # caller's transaction.
        with transaction.atomic(using=self.db, savepoint=False):
            _lock_chains(self.model, {row.organization_id for row in rows})
            self._link(rows)
            if not args and not kwargs and bulk.insert(self.model, rows, self.db):
                return rows
            # django-stubs leaves _Model unsolved on super() in a QuerySet subclass.
            return super().bulk_create(rows, *args, **kwargs)  # type: ignore[arg-type]

    def create(self, **kwargs):
        return self.bulk_create([self.model(**kwargs)])[0]

    def update(self, **kwargs):
        raise TypeError(f"{self.model.__name__} rows are never changed once written.")

    def delete(self):
        raise TypeError(f"{self.model.__name__} rows are never deleted.")


def _lock_chains(model: type[models.Model], organization_ids: set[int | None]) -> None:
    """Serialize appends per organization (two at once would both link to one head).

    The organization model is read off the row's foreign key, so this module needs no
    import of the app that defines it (core is the bottom layer).
    """
    organization = cast("type[models.Model]", model._meta.get_field("organization").related_model)
    ids = [pk for pk in organization_ids if pk is not None]
    if ids:
        rows = organization._default_manager.select_for_update().filter(pk__in=ids)
        list(rows.values_list("pk"))


class ChainedModel(models.Model):
    """An insert-only row in a per-organization hash chain.

    Subclasses name the fields the hash covers in CHAIN_FIELDS. The database also
    refuses UPDATE and DELETE on these tables (see the audit migrations).
    """

    CHAIN_FIELDS: tuple[str, ...] = ()
    # Fields added after rows were chained: hashed only where set, so every row written
    # before a field existed still verifies as it was written.
    LATER_CHAIN_FIELDS: tuple[str, ...] = ()

    created_at = models.DateTimeField(default=None, editable=False, db_index=True)
    prev_hash = models.CharField(max_length=64, editable=False)
    row_hash = models.CharField(max_length=64, editable=False)
    # Every subclass has an `organization` foreign key (null for platform rows).
    organization_id: int | None

    objects = ChainedQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise TypeError(f"{type(self).__name__} rows are never changed once written.")
        type(self).objects.bulk_create([self])
        self._state.adding = False

    def delete(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} rows are never deleted.")

    def chain_content(self) -> dict[str, Any]:
        return content_of(type(self), [getattr(self, name) for name in hashed_fields(type(self))])


def hashed_fields(model: type[ChainedModel]) -> tuple[str, ...]:
    """The fields to read for a row's hash, in the order `content_of` takes them."""
    return (*model.CHAIN_FIELDS, *model.LATER_CHAIN_FIELDS)


def content_of(model: type[ChainedModel], values: Iterable[Any]) -> dict[str, Any]:
    """What a row's hash covers, from its `hashed_fields` values."""
    content = dict(zip(hashed_fields(model), values, strict=True))
    for name in model.LATER_CHAIN_FIELDS:
        if not content[name]:
            del content[name]
    return content


@dataclass(frozen=True)
class Break:
    row_id: int
    kind: str  # "removed": the link to the row before is wrong; "changed": the row's own hash

    REASONS: ClassVar[dict[str, str]] = {
        "removed": "a row before it was removed or changed",
        "changed": "its content was changed after it was written",
    }

    @property
    def reason(self) -> str:
        return self.REASONS[self.kind]


@dataclass(frozen=True)
class Walk:
    """How far a walk along a chain got: the last good row, and the first broken one."""

    checked: int
    last_id: int
    last_hash: str
    broken: Break | None


def walk(
    model: type[ChainedModel],
    organization_id: int | None,
    *,
    after_id: int = 0,
    expected_prev: str = GENESIS,
    progress: Callable[[int], None] | None = None,
    every: int = 10_000,
) -> Walk:
    """Check one organization's chain from the row after `after_id` (whose hash is
    `expected_prev`), in id order, stopping at the first broken row.

    Reads plain values rather than model instances: a million rows a run is the
    normal case, and the hash needs only the `hashed_fields`.
    """
    fields = hashed_fields(model)
    rows = (
        # The abstract ChainedModel has no organization field; every concrete one does.
        model.objects.filter(organization_id=organization_id, id__gt=after_id)  # type: ignore[misc]
        .order_by("id")
        .values_list("id", "prev_hash", "row_hash", *fields)
    )
    checked, last_id, last_hash = 0, after_id, expected_prev
    for row_id, prev_hash, row_hash, *values in rows.iterator(chunk_size=CHUNK):
        if prev_hash != last_hash:
            return Walk(checked, last_id, last_hash, Break(row_id, "removed"))
        if digest(prev_hash, content_of(model, values)) != row_hash:
            return Walk(checked, last_id, last_hash, Break(row_id, "changed"))
        checked += 1
        last_id, last_hash = row_id, row_hash
        if progress is not None and checked % every == 0:
            progress(checked)
    return Walk(checked, last_id, last_hash, None)


def verify_chain(
    model: type[ChainedModel], organization_id: int | None
) -> tuple[int, Break | None]:
    """Walk one organization's whole chain; return how many rows were checked and the first
    break (the broken row counts as checked)."""
    result = walk(model, organization_id)
    return result.checked + (1 if result.broken else 0), result.broken


def head(model: type[ChainedModel], organization_id: int | None) -> str:
    """The newest hash of an organization's chain: exports carry it."""
    return (
        # The abstract ChainedModel has no organization field; every concrete one does.
        model.objects.filter(organization_id=organization_id)  # type: ignore[misc]
        .order_by("-id")
        .values_list("row_hash", flat=True)
        .first()
        or GENESIS
    )
