"""Database helpers for the bulk paths."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connections, models, router


def bulk_update_fast(objs: Sequence[models.Model], fields: Sequence[str]) -> None:
    """``UPDATE … WHERE pk = ?`` for many rows as one ``executemany``.

    Django's ``bulk_update`` builds a ``CASE WHEN`` expression per field and row, which
    costs milliseconds per row in Python; this sends plain parameters (psycopg 3 pipelines
    them). Like ``bulk_update`` it sends no signals and does not touch ``auto_now`` fields
    the caller did not set.
    """
    if not objs:
        return
    model = type(objs[0])
    meta = model._meta
    connection = connections[router.db_for_write(model)]
    concrete = [meta.get_field(name) for name in fields]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(f.column)} = %s" for f in concrete)
    sql = f"UPDATE {quote(meta.db_table)} SET {assignments} WHERE {quote(meta.pk.column)} = %s"
    rows = [
        [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in concrete] + [obj.pk]
        for obj in objs
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
