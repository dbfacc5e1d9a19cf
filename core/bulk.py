"""Bulk inserts and updates in one statement with one parameter, on PostgreSQL.

Django's `bulk_create` on PostgreSQL sends one array per column (INSERT ... UNNEST), and
psycopg quotes each element of those arrays in Python, character by character where text
holds quotes (an attempt's JSON payload); `bulk_update` builds a CASE branch per row and
field. For a sync run's 250-row batches both cost several times the ERP's answer
(bench/sync_bench.py, issue 13 item 7). Here the rows travel as one JSON document, quoted
by libpq in C, and PostgreSQL unpacks it with `json_populate_recordset` into the table's
own row type, so every column is converted by its own input function: the stored values
are those Django would have stored.

Both functions say whether they wrote (False: not PostgreSQL, or a value they do not know
how to carry); the caller then uses Django's own bulk methods. Nothing is written before
that answer.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import orjson
from django.db import connections, models
from django.db.models.expressions import RawSQL

# Plain JSON values pass as they are; these become their text form, which PostgreSQL's
# input function for the column reads back as the same value.
_AS_TEXT = (datetime, date, time, Decimal, uuid.UUID)
_PLAIN = (str, int, float, bool, type(None))


class _Unsupported(Exception):
    """A value or field this module does not carry: the caller falls back to Django."""


def insert(model: type[models.Model], objs: Sequence[models.Model], using: str) -> bool:
    """INSERT `objs` (none with a primary key yet) in one statement, in their order, and
    set each one's primary key; ids ascend in list order (a hash chain depends on it)."""
    connection = connections[using]
    if connection.vendor != "postgresql" or not objs:
        return False
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    fields = [f for f in meta.concrete_fields if f is not pk]
    try:
        if meta.parents or any(obj.pk is not None for obj in objs):
            raise _Unsupported
        if any(_generated(f) for f in fields):
            raise _Unsupported
        document = _document(
            fields, [[f.pre_save(obj, add=True) for f in fields] for obj in objs], connection
        )
    except _Unsupported:
        return False
    table = connection.ops.quote_name(meta.db_table)
    columns = ", ".join(_quoted(connection, f) for f in fields)
    # ORDER BY ordinality: rows are inserted, and take their ids, in the document's order.
    sql = (
        f"INSERT INTO {table} ({columns}) SELECT {columns} "
        f"FROM json_populate_recordset(NULL::{table}, %s::json) WITH ORDINALITY AS v "
        f"ORDER BY v.ordinality RETURNING {_quoted(connection, pk)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [document])
        ids = [row[0] for row in cursor.fetchall()]
    if len(ids) != len(objs):
        raise AssertionError(f"inserted {len(ids)} rows of {len(objs)}")
    # RETURNING gives the rows in the order they were inserted.
    for obj, pk_value in zip(objs, sorted(ids), strict=True):
        obj.pk = pk_value
        obj._state.adding = False
        obj._state.db = using
    return True


def update(
    model: type[models.Model], objs: Sequence[models.Model], names: Sequence[str], using: str
) -> bool:
    """UPDATE the fields `names` of `objs` (distinct rows) to their values in memory, in one
    statement, like `bulk_update(objs, names)`."""
    connection = connections[using]
    if connection.vendor != "postgresql" or not objs:
        return False
    meta = model._meta
    pk = meta.pk
    assert pk is not None
    fields = [meta.get_field(name) for name in names]
    try:
        if any(not f.concrete or f.many_to_many or f.primary_key for f in fields):
            raise _Unsupported
        concrete = [f for f in fields if isinstance(f, models.Field)]
        if len({obj.pk for obj in objs}) != len(objs) or any(obj.pk is None for obj in objs):
            raise _Unsupported  # a row joined twice would take either value
        document = _document(
            [pk, *concrete],
            [[obj.pk, *(getattr(obj, f.attname) for f in concrete)] for obj in objs],
            connection,
        )
    except _Unsupported:
        return False
    table = connection.ops.quote_name(meta.db_table)
    key = _quoted(connection, pk)
    sets = ", ".join(f"{_quoted(connection, f)} = v.{_quoted(connection, f)}" for f in concrete)
    sql = (
        f"UPDATE {table} SET {sets} "
        f"FROM json_populate_recordset(NULL::{table}, %s::json) AS v "
        f"WHERE {table}.{key} = v.{key}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [document])
    return True


def _column(field: models.Field) -> str:
    assert field.column is not None  # a concrete field
    return field.column


def _quoted(connection, field: models.Field) -> str:
    return connection.ops.quote_name(_column(field))


def _generated(field: models.Field) -> bool:
    return bool(getattr(field, "generated", False)) or field.has_db_default()


def _document(fields: list[models.Field], rows: list[list[Any]], connection) -> str:
    """The rows (values in the order of `fields`) as a JSON array of {column: value}."""
    columns = [_column(field) for field in fields]
    convert = [_converter(field, connection) for field in fields]
    try:
        # orjson writes the document several times as fast as json (it was a fifth of a
        # batch's bookkeeping, bench/sync_bench.py). It refuses integers past 64 bits and
        # keys that are not text; a float column's NaN or infinity is refused before it
        # gets here (`_converter`), since orjson would write it as null. Inside a JSON
        # value it is null too, where Django's path would fail: our payloads hold none.
        return orjson.dumps(
            [
                {
                    column: value if value is None else to_json(value)
                    for column, to_json, value in zip(columns, convert, row, strict=True)
                }
                for row in rows
            ],
        ).decode()
    except TypeError:
        raise _Unsupported from None  # Django's own path says what is wrong with it


def _converter(field: models.Field, connection) -> Callable[[Any], Any]:
    """How a value of the field becomes what the column is to hold, as a JSON value.

    None is SQL NULL everywhere (a JSON null), as Django stores None. Text in a text
    field and whole numbers in an integer field (keys included) are taken as they are;
    anything else goes through the field's own `get_db_prep_save`, as Django's bulk
    methods do.
    """
    if isinstance(field, models.JSONField):
        if field.encoder is not None:
            raise _Unsupported
        return _same  # the document itself
    internal = field.get_internal_type()
    if internal == "FloatField":
        return lambda value: _finite(_prepared(field, value, connection))
    if internal == "BooleanField":
        return lambda value: value if type(value) is bool else _prepared(field, value, connection)
    if internal == "DateTimeField":
        return lambda value: (
            value.isoformat()
            if type(value) is datetime and value.tzinfo is not None
            else _prepared(field, value, connection)
        )
    if internal in _TEXT_TYPES:
        return lambda value: value if type(value) is str else _prepared(field, value, connection)
    if internal in _INTEGER_TYPES:
        return lambda value: value if type(value) is int else _prepared(field, value, connection)
    if internal == "ForeignKey" or internal == "OneToOneField":
        target = field.target_field  # type: ignore[attr-defined]
        if target.get_internal_type() in _INTEGER_TYPES:
            return lambda value: (
                value if type(value) is int else _prepared(field, value, connection)
            )
    return lambda value: _prepared(field, value, connection)


_TEXT_TYPES = {"CharField", "TextField", "SlugField", "EmailField", "URLField"}
_INTEGER_TYPES = {
    "AutoField",
    "BigAutoField",
    "SmallAutoField",
    "IntegerField",
    "BigIntegerField",
    "SmallIntegerField",
    "PositiveIntegerField",
    "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
}


def _same(value: Any) -> Any:
    return value


def _prepared(field: models.Field, value: Any, connection) -> Any:
    value = field.get_db_prep_save(value, connection)
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, _AS_TEXT):
        if isinstance(value, datetime) and value.tzinfo is None:
            raise _Unsupported  # the session's time zone would decide what it means
        return value.isoformat() if isinstance(value, datetime | date | time) else str(value)
    raise _Unsupported


def with_ids(queryset: models.QuerySet, ids: Sequence[int], field: str = "pk") -> models.QuerySet:
    """`queryset.filter(<field>__in=ids)` for thousands of integer ids (`field`: the primary
    key, or a foreign key to an integer one).

    On PostgreSQL the ids travel as one array parameter: as a list of placeholders, each
    quoted in Python and matched in a query text thousands of parameters long, they cost
    more than the query itself. Elsewhere, the plain filter.
    """
    if not ids:
        return queryset.none()  # as filter(pk__in=[]): no query at all
    connection = connections[queryset.db]
    meta = queryset.model._meta
    key = meta.pk if field == "pk" else meta.get_field(field).target_field
    assert key is not None
    if connection.vendor != "postgresql" or key.get_internal_type() not in _INTEGER_TYPES:
        return queryset.filter(**{f"{field}__in": ids})
    array = RawSQL("SELECT unnest(%s::bigint[])", [list(ids)])
    return queryset.filter(**{f"{field}__in": array})


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unsupported  # Django's path stores it as PostgreSQL's NaN or Infinity
    return value
