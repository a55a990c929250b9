"""Raw bulk SQL for the ingest path: many rows per statement, no model instances.

Django's ``bulk_create`` and ``bulk_update`` build a model instance per row and prepare
every value through the field API; at a thousand rows per page and ten rows written per
record that costs more than the database does. These helpers take plain tuples:

- :func:`bulk_insert` — ``INSERT`` many rows, optionally skipping conflicts, optionally
  returning the new primary keys;
- :func:`bulk_upsert` — ``INSERT … ON CONFLICT (unique fields) DO UPDATE``;
- :func:`bulk_update` — ``UPDATE … WHERE pk = …`` for many rows (and
  :func:`bulk_update_fast` for model instances);
- :func:`rows_matching` — rows by many composite keys at once, one index probe per key;
- :func:`analyze_new_tables` — statistics for tables a backfill is filling for the first
  time, so its lookups stay index lookups.

On PostgreSQL rows travel by binary ``COPY`` (psycopg 3), straight into the table or, when
conflicts or updates need SQL, into a temporary staging table that one ``INSERT … SELECT``
or ``UPDATE … FROM`` drains. On SQLite (the demo database) they are plain parameterised
statements. No signals are sent. Inserts give the fields not named their defaults, as
``bulk_create`` would; updates write the named fields only (``auto_now`` included only when
named). Values are Python values of the field's type: ids for foreign keys (named by the
field's name), aware datetimes, ``Decimal``, dicts and lists for JSON.
"""

from __future__ import annotations

import operator
import re
import time
import zlib
from collections.abc import Callable, Iterable, Sequence
from functools import reduce
from typing import Any

from django.db import connections, models, router, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.base import ModelState
from django.utils import timezone
from psycopg.types.json import Jsonb

Row = Sequence[Any]


class JsonText(str):
    """A JSON value already encoded (e.g. the text a content hash was computed over): the
    bulk helpers store it in a JSON column as it is instead of encoding it again."""


def _as_is(text: str) -> str:
    return text


# Field types whose Python values psycopg writes as they are; others go through the field.
_NATIVE_ON_POSTGRESQL = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "BigIntegerField",
        "BooleanField",
        "CharField",
        "DateField",
        "DateTimeField",
        "DecimalField",
        "EmailField",
        "FloatField",
        "ForeignKey",
        "IntegerField",
        "OneToOneField",
        "PositiveBigIntegerField",
        "PositiveIntegerField",
        "PositiveSmallIntegerField",
        "SlugField",
        "SmallIntegerField",
        "TextField",
        "URLField",
    }
)


def bulk_insert(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Iterable[Row],
    *,
    ignore_conflicts: bool = False,
    returning: Sequence[str] = (),
) -> list[tuple]:
    """Insert ``rows`` (tuples in the order of ``fields``) and return ``returning`` columns.

    ``returning`` names the primary key (``"pk"``) and/or some of ``fields``; the result has
    one tuple per row inserted, in the order of ``rows``. With ``ignore_conflicts`` rows
    that would violate a unique constraint are skipped and return nothing, so return a
    unique column alongside the key to tell which rows went in.
    """
    rows = list(rows)
    if not rows:
        return []
    connection = _connection(model)
    fields, rows = _with_defaults(model, fields, rows)
    returning = [model._meta.pk.name if name == "pk" else name for name in returning]
    if connection.vendor == "postgresql":
        return _pg_insert(connection, model, fields, rows, ignore_conflicts, returning)
    meta = model._meta
    columns = _columns(connection, model, fields)
    conflict = " ON CONFLICT DO NOTHING" if ignore_conflicts else ""
    prepared = _prepare(connection, model, fields, rows)
    with connection.cursor() as cursor:
        if not returning:
            sql = (
                f"INSERT INTO {_q(connection, meta.db_table)} ({columns}) VALUES ({_marks(fields)})"
            )
            cursor.executemany(sql + conflict, prepared)
            return []
        if not connection.features.can_return_rows_from_bulk_insert:
            raise NotImplementedError("bulk_insert(returning=…) needs SQLite 3.35 or later")
        out = ", ".join(_q(connection, _column(model, name)) for name in returning)
        per_statement = max(1, connection.features.max_query_params // len(fields))
        result: list[tuple] = []
        for start in range(0, len(prepared), per_statement):
            chunk = prepared[start : start + per_statement]
            values = ", ".join([f"({_marks(fields)})"] * len(chunk))
            cursor.execute(
                f"INSERT INTO {_q(connection, meta.db_table)} ({columns}) VALUES {values}"
                f"{conflict} RETURNING {out}",
                [value for row in chunk for value in row],
            )
            result.extend(tuple(row) for row in cursor.fetchall())
        return result


def bulk_upsert(
    model: type[models.Model],
    fields: Sequence[str],
    rows: Iterable[Row],
    *,
    unique_fields: Sequence[str],
    update_fields: Sequence[str],
) -> None:
    """``INSERT … ON CONFLICT (unique_fields) DO UPDATE SET update_fields`` for many rows.

    Precondition: no two rows share their ``unique_fields`` values (PostgreSQL refuses to
    update one row twice in a statement).
    """
    rows = list(rows)
    if not rows:
        return
    connection = _connection(model)
    fields, rows = _with_defaults(model, fields, rows)
    target = ", ".join(_q(connection, _column(model, name)) for name in unique_fields)
    updates = ", ".join(
        f"{col} = EXCLUDED.{col}"
        for col in (_q(connection, _column(model, name)) for name in update_fields)
    )
    conflict = f"ON CONFLICT ({target}) DO UPDATE SET {updates}"
    if connection.vendor == "postgresql":
        _pg_insert_from_staging(connection, model, fields, rows, conflict, returning=None)
        return
    table, columns = _q(connection, model._meta.db_table), _columns(connection, model, fields)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {table} ({columns}) VALUES ({_marks(fields)}) {conflict}",
            _prepare(connection, model, fields, rows),
        )


def bulk_update(model: type[models.Model], fields: Sequence[str], rows: Iterable[Row]) -> None:
    """Set ``fields`` on many rows: each row is ``(pk, value, …)`` in the order of ``fields``.

    Precondition: no primary key appears twice in ``rows``.
    """
    rows = list(rows)
    if not rows:
        return
    connection = _connection(model)
    meta = model._meta
    table, pk = _q(connection, meta.db_table), _q(connection, meta.pk.column)
    names = [meta.pk.name, *fields]
    if connection.vendor == "postgresql":
        sets = ", ".join(
            f"{col} = staged.{col}"
            for col in (_q(connection, _column(model, name)) for name in fields)
        )
        with transaction.atomic(using=connection.alias, savepoint=False):
            staging = _pg_stage(connection, model, names, rows)
            _execute(
                connection,
                f"WITH staged AS (DELETE FROM {staging} RETURNING *) "
                f"UPDATE {table} SET {sets} FROM staged WHERE {table}.{pk} = staged.{pk}",
            )
        return
    assignments = ", ".join(f"{_q(connection, _column(model, name))} = %s" for name in fields)
    prepared = _prepare(connection, model, names, rows)
    with connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET {assignments} WHERE {pk} = %s",
            [[*row[1:], row[0]] for row in prepared],
        )


def bulk_update_fast(objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """:func:`bulk_update` for model instances: write ``fields`` of each object by pk.

    Like Django's ``bulk_update`` it sends no signals and does not touch ``auto_now``
    fields the caller did not name; unlike it, it builds no ``CASE WHEN`` per field and row.
    """
    if not objs or not fields:
        return
    meta = type(objs[0])._meta
    values = operator.attrgetter(meta.pk.attname, *(meta.get_field(n).attname for n in fields))
    bulk_update(type(objs[0]), fields, [values(obj) for obj in objs])


def instance_maker(model: type[models.Model]) -> Callable[..., models.Model]:
    """A constructor for many new, unsaved instances of ``model``: ``make(**values)`` gives
    what ``model(**values)`` would, without ``Model.__init__``'s per-field work and its
    pre_init/post_init signals (a quarter of a backfill's Python time went there).

    Preconditions: ``values`` are keyed by attribute name (``customer_id``, not
    ``customer``); the model has no ``__init__`` of its own and no init-signal receiver
    that matters for instances written by these bulk helpers.
    """
    fields = model._meta.concrete_fields
    fresh = [f for f in fields if f.has_default() and callable(f.default)]
    fixed = {f.attname: f.get_default() for f in fields if f not in fresh}

    def make(**values: Any) -> models.Model:
        obj = model.__new__(model)
        obj._state = ModelState()
        attrs = obj.__dict__
        attrs.update(fixed)
        for f in fresh:
            attrs[f.attname] = f.get_default()
        attrs.update(values)
        return obj

    return make


def rows_matching(
    model: type[models.Model],
    fields: Sequence[str],
    keys: Iterable[Row],
    columns: Sequence[str],
) -> list[tuple]:
    """``columns`` of the rows whose ``fields`` equal one of ``keys``, in one query.

    For lookups of many composite keys at once (a page's identity keys). On PostgreSQL each
    key is one probe of an index on ``fields``: a ``LATERAL`` subquery per key, fenced with
    ``OFFSET 0`` so the planner cannot turn it into a hash join over the whole table, which
    it does with long ``IN`` lists as soon as a sequential scan looks cheap. Elsewhere: an
    ``OR`` of ``first fields = … AND last field IN (…)`` per distinct leading value.
    """
    keys = {tuple(key) for key in keys}
    if not keys:
        return []
    connection = _connection(model)
    if connection.vendor != "postgresql":
        *lead, last = fields
        groups: dict[tuple, list] = {}
        for key in keys:
            groups.setdefault(key[:-1], []).append(key[-1])
        condition = reduce(
            operator.or_,
            (
                models.Q(**dict(zip(lead, prefix, strict=True)), **{f"{last}__in": values})
                for prefix, values in sorted(groups.items())
            ),
        )
        return list(model.objects.filter(condition).values_list(*columns).order_by())
    meta = model._meta
    concrete = [meta.get_field(name) for name in fields]
    arrays = ", ".join(f"%s::{_pg_type(connection, f)}[]" for f in concrete)
    names = ", ".join(_q(connection, f.column) for f in concrete)
    match = " AND ".join(
        f"t.{_q(connection, f.column)} = k.{_q(connection, f.column)}" for f in concrete
    )
    out = ", ".join(f"t.{_q(connection, _column(model, name))}" for name in columns)
    ordered = list(keys)
    return _execute(
        connection,
        f"SELECT {out} FROM unnest({arrays}) AS k({names}) CROSS JOIN LATERAL "
        f"(SELECT * FROM {_q(connection, meta.db_table)} t WHERE {match} OFFSET 0) AS t",
        [[key[n] for key in ordered] for n in range(len(concrete))],
        fetch=True,
    )


def analyze_new_tables(*models_: type[models.Model]) -> list[str]:
    """``ANALYZE`` the tables of ``models_`` that hold rows but have no statistics yet.

    Without statistics PostgreSQL takes every equality for a near-unique match, so the
    batch lookups of the pipeline (a thousand keys ``IN`` one query) are planned as scans
    of everything the leading index columns match: a first backfill into a new database
    slows down page after page. Autovacuum analyzes such tables eventually, but not in its
    first minute (and never where it is off). Statistics taken once, early, keep their
    proportions as the table grows. Returns the tables analyzed; a no-op on other databases.
    """
    connection = _connection(models_[0])
    if connection.vendor != "postgresql":
        return []
    tables = [
        row[0]
        for row in _execute(
            connection,
            "SELECT c.oid::regclass::text FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.oid = ANY(%s::regclass[]) AND pg_relation_size(c.oid) > 0 "
            "AND NOT EXISTS (SELECT FROM pg_stats s "
            "WHERE s.schemaname = n.nspname AND s.tablename = c.relname)",
            [[_q(connection, m._meta.db_table) for m in models_]],
            fetch=True,
        )
    ]
    if tables:
        _execute(connection, f"ANALYZE {', '.join(tables)}")
    return tables


# -- PostgreSQL: binary COPY --------------------------------------------------------------


def _pg_insert(
    connection: BaseDatabaseWrapper,
    model: type[models.Model],
    fields: Sequence[str],
    rows: list[Row],
    ignore_conflicts: bool,
    returning: Sequence[str],
) -> list[tuple]:
    meta = model._meta
    if returning:
        # Keys come from the table's sequence before the COPY, so every row's key is known
        # here and the result is in the order of ``rows`` without trusting RETURNING order.
        positions = {name: n + 1 for n, name in enumerate(fields)} | {meta.pk.name: 0}
        unknown = [name for name in returning if name not in positions]
        if unknown:
            raise ValueError(f"bulk_insert can return the key or given fields, not {unknown}")
        keys = _pg_next_keys(connection, model, len(rows))
        fields = [meta.pk.name, *fields]
        rows = [(key, *row) for key, row in zip(keys, rows, strict=True)]
    if not ignore_conflicts:
        _pg_copy(connection, model, meta.db_table, fields, rows)
        inserted = rows
    else:
        pk = _q(connection, meta.pk.column) if returning else None
        kept = _pg_insert_from_staging(
            connection, model, fields, rows, "ON CONFLICT DO NOTHING", returning=pk
        )
        inserted = [row for row in rows if row[0] in kept] if returning else []
    if not returning:
        return []
    picks = [positions[name] for name in returning]
    return [tuple(row[p] for p in picks) for row in inserted]


def _pg_insert_from_staging(
    connection: BaseDatabaseWrapper,
    model: type[models.Model],
    fields: Sequence[str],
    rows: list[Row],
    conflict: str,
    *,
    returning: str | None,
) -> set:
    columns = _columns(connection, model, fields)
    with transaction.atomic(using=connection.alias, savepoint=False):
        staging = _pg_stage(connection, model, fields, rows)
        sql = (
            f"WITH staged AS (DELETE FROM {staging} RETURNING *) "
            f"INSERT INTO {_q(connection, model._meta.db_table)} ({columns}) "
            f"SELECT {columns} FROM staged {conflict}"
        )
        if returning is None:
            _execute(connection, sql)
            return set()
        return {row[0] for row in _execute(connection, f"{sql} RETURNING {returning}", fetch=True)}


def _pg_stage(
    connection: BaseDatabaseWrapper,
    model: type[models.Model],
    fields: Sequence[str],
    rows: list[Row],
) -> str:
    """COPY rows into an empty temporary table with the columns of ``fields``; its name.

    Precondition: inside a transaction. The staging table lives for the session and is
    emptied by the statement that reads it (``DELETE … RETURNING``), so it can be used
    again in the same transaction; a rollback empties it too.
    """
    table = model._meta.db_table
    columns = _columns(connection, model, fields)
    name = f"_bulk_{table}_{zlib.crc32(columns.encode()):08x}"[:63]
    _execute(
        connection,
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {_q(connection, name)} "
        f"AS SELECT {columns} FROM {_q(connection, table)} WITH NO DATA",
    )
    _pg_copy(connection, model, name, fields, rows)
    return _q(connection, name)


def _pg_copy(
    connection: BaseDatabaseWrapper,
    model: type[models.Model],
    table: str,
    fields: Sequence[str],
    rows: list[Row],
) -> None:
    meta = model._meta
    concrete = [meta.get_field(name) for name in fields]
    types = [_pg_type(connection, f) for f in concrete]
    preps = [_pg_prep(connection, f) for f in concrete]
    columns = _columns(connection, model, fields)
    sql = f"COPY {_q(connection, table)} ({columns}) FROM STDIN (FORMAT BINARY)"
    started = time.monotonic()
    with (
        connection.cursor() as wrapper,
        connection.wrap_database_errors,  # IntegrityError and friends, as Django raises them
        wrapper.cursor.copy(sql) as copy,
    ):
        copy.set_types(types)
        if any(preps):
            for row in rows:
                copy.write_row(
                    [v if p is None or v is None else p(v) for v, p in zip(row, preps, strict=True)]
                )
        else:
            for row in rows:
                copy.write_row(row)
    _log(connection, f"{sql} -- {len(rows)} rows", started)


def _pg_next_keys(
    connection: BaseDatabaseWrapper, model: type[models.Model], count: int
) -> list[int]:
    meta = model._meta
    rows = _execute(
        connection,
        "SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
        [_q(connection, meta.db_table), meta.pk.column, count],
        fetch=True,
    )
    return [row[0] for row in rows]


def _pg_type(connection: BaseDatabaseWrapper, field: models.Field) -> str:
    """The column's type without its modifiers ("varchar(64)" → "varchar")."""
    return re.sub(r"\(.*\)", "", field.db_type(connection) or "").strip()


def _pg_prep(connection: BaseDatabaseWrapper, field: models.Field) -> Callable[[Any], Any] | None:
    if field.get_internal_type() in _NATIVE_ON_POSTGRESQL:
        return None
    if isinstance(field, models.JSONField) and field.encoder is None:
        # psycopg encodes dicts and lists itself; text already encoded goes as it is.
        return lambda value: Jsonb(value, dumps=_as_is) if type(value) is JsonText else value
    return lambda value: field.get_db_prep_save(value, connection)


# -- shared -------------------------------------------------------------------------------


def _connection(model: type[models.Model]) -> BaseDatabaseWrapper:
    return connections[router.db_for_write(model)]


def _q(connection: BaseDatabaseWrapper, name: str) -> str:
    return connection.ops.quote_name(name)


def _column(model: type[models.Model], name: str) -> str:
    return model._meta.get_field(name).column


def _columns(
    connection: BaseDatabaseWrapper, model: type[models.Model], fields: Sequence[str]
) -> str:
    return ", ".join(_q(connection, _column(model, name)) for name in fields)


def _with_defaults(
    model: type[models.Model], fields: Sequence[str], rows: list[Row]
) -> tuple[list[str], list[Row]]:
    """Add the fields not named, with the value ``Model()`` and ``save()`` would give them:
    their default (evaluated once for all rows), or the time of the call for ``auto_now``
    and ``auto_now_add`` fields."""
    named = {model._meta.get_field(name).name for name in fields}
    missing = [
        f
        for f in model._meta.concrete_fields
        if f.name not in named and not f.primary_key and not f.generated
    ]
    if not missing:
        return list(fields), rows
    now = timezone.now()
    defaults = tuple(
        now
        if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        else f.get_default()
        for f in missing
    )
    return [*fields, *(f.name for f in missing)], [(*row, *defaults) for row in rows]


def _marks(fields: Sequence[str]) -> str:
    return ", ".join(["%s"] * len(fields))


def _prepare(
    connection: BaseDatabaseWrapper,
    model: type[models.Model],
    fields: Sequence[str],
    rows: list[Row],
) -> list[list[Any]]:
    concrete = [model._meta.get_field(name) for name in fields]
    return [
        [
            str(v) if type(v) is JsonText else f.get_db_prep_save(v, connection)
            for f, v in zip(concrete, row, strict=True)
        ]
        for row in rows
    ]


def _execute(
    connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any] = (), *, fetch: bool = False
) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if fetch else []


def _log(connection: BaseDatabaseWrapper, sql: str, started: float) -> None:
    """Record a COPY where Django records queries, so query-count tests and debug see it."""
    if connection.queries_logged:
        connection.queries_log.append({"sql": sql, "time": f"{time.monotonic() - started:.3f}"})
