"""The identity lock: who may decide, at a given moment, which customer a record is.

Two writers that each resolve a new record by its keys cannot see each other's
uncommitted customers: run side by side (two workers importing one file, the CRM and the
ERP syncing at once) they would both create "alice@example.com". Nor may a record be
applied to a customer that a merge is moving away at that moment. So on PostgreSQL:

- applying customers, merging and unmerging take the lock exclusively;
- applying related records (deals, orders, invoices, payments, tickets …) takes it
  shared: they only read which customer an id belongs to, so they run side by side,
  but never while a merge re-points customers.

It is a transaction-level advisory lock, released at commit or rollback, so it covers
exactly the writes it protects. Mapping and landing, most of the work of a page, happen
before it is taken and run in parallel. SQLite (the demo database) has one writer at a
time anyway.
"""

from __future__ import annotations

from django.db import connections, router

from customers.models import Customer

# An arbitrary 64-bit key of our own in PostgreSQL's advisory lock space ("Concord\0").
IDENTITY_LOCK_KEY = 0x436F6E636F726400


def identity_lock(*, exclusive: bool) -> None:
    """Take the identity lock until the end of the current transaction.

    Precondition: inside ``transaction.atomic()`` (outside one the lock would be released
    at once). Re-entrant within a transaction. A transaction must not ask for it shared
    and then exclusive: two such transactions would deadlock.
    """
    connection = connections[router.db_for_write(Customer)]
    if connection.vendor != "postgresql":
        return
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {function}(%s)", [IDENTITY_LOCK_KEY])
