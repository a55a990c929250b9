"""Webhook receipt: verify, land, answer fast; a task processes what was landed.

One event costs one query in the steady state: the connector (decrypted secret, parsed
configuration, stream mappings) is built once per connection *version* and kept in this
process, and the event lands with a single ``INSERT … SELECT … FROM connection WHERE
enabled AND updated_at = <version> ON CONFLICT DO NOTHING RETURNING id``. The INSERT
itself proves the cached connector is current: it lands nothing when the connection was
disabled, edited (a rotated secret, a new route) or its system renamed since the cache
was filled, and the event is then verified again against a freshly loaded connection.
Every ``Connection.save()`` bumps ``updated_at`` (``auto_now``); saves and deletes in
this process also drop the cache at once (signals below).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from django.db import connection as db
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from customers.errors import ApplicationError
from customers.models import SourceSystem

from .connectors.base import Connector, WebhookRequest
from .models import Connection, InboundRecord
from .pipeline.mapping import DELETED_MARK, Mapping, lookup
from .pipeline.mapping import content_hash as payload_hash

logger = logging.getLogger(__name__)


class WebhookRejected(ApplicationError):
    """Signature or timestamp wrong: answered 401, logged, never landed."""


class WebhookInvalid(ApplicationError):
    """Signed, but not an event we can read: answered 400 with the reason."""


@dataclass
class WebhookReceipt:
    event_id: str
    event_type: str
    record_id: int | None  # None for event types the connection does not route
    duplicate: bool
    system_id: int | None = None  # whose pending events the caller asks a drain for


class _Stale(Exception):
    """The cached receiver is older than the connection: reload it and start again."""


@dataclass
class _Receiver:
    """What receiving needs of one connection version, built once and then reused."""

    connection_id: int
    system_id: int
    system_name: str
    version: dt.datetime  # Connection.updated_at when it was loaded
    connector: Connector
    config: dict[str, Any]
    streams: dict[str, Any]
    delete_policy: str
    mappings: dict[str, Mapping] = field(default_factory=dict)

    def mapping(self, stream: str, config: dict[str, Any]) -> Mapping:
        mapping = self.mappings.get(stream)
        if mapping is None:
            mapping = Mapping.from_dict(config["mapping"], entity=config["entity"])
            self.mappings[stream] = mapping
        return mapping


_receivers: dict[str, _Receiver] = {}
_receivers_lock = threading.Lock()


def webhook_receivers_clear() -> None:
    """Forget every cached connection (they are rebuilt on the next event)."""
    with _receivers_lock:
        _receivers.clear()


@receiver(post_save, sender=Connection, dispatch_uid="webhooks.connection_saved")
@receiver(post_delete, sender=Connection, dispatch_uid="webhooks.connection_deleted")
@receiver(post_save, sender=SourceSystem, dispatch_uid="webhooks.system_saved")
def _connection_changed(**kwargs: Any) -> None:
    webhook_receivers_clear()


def _receiver_load(system_name: str) -> _Receiver:
    """Query: the enabled connection of the system (one SELECT, joined to its system)."""
    from .sync import connection_connector

    connection = (
        Connection.objects.select_related("system")
        .filter(system__name=system_name, enabled=True)
        .first()
    )
    if connection is None:
        with _receivers_lock:
            _receivers.pop(system_name, None)
        raise WebhookRejected(f"no enabled connection for {system_name!r}")
    loaded = _Receiver(
        connection_id=connection.pk,
        system_id=connection.system_id,
        system_name=system_name,
        version=connection.updated_at,
        connector=connection_connector(connection),
        config=connection.config,
        streams=connection.streams,
        delete_policy=connection.delete_policy,
    )
    with _receivers_lock:
        _receivers[system_name] = loaded
    return loaded


def webhook_receive(
    *, system_name: str, headers: dict[str, str], body: bytes, remote_addr: str = ""
) -> WebhookReceipt:
    """Verify a webhook and land its event; the caller enqueues processing on commit.

    Redeliveries (same event id, or identical content) land nothing new. Queries: one
    (the landing INSERT) when this process has seen the connection at its current
    version, plus one to load the connection otherwise; a redelivery adds two lookups.
    """
    request = WebhookRequest(headers=headers, body=body)
    cached = _receivers.get(system_name)
    for attempt in range(3):
        current = cached if attempt == 0 and cached is not None else None
        fresh = current is None
        if fresh:
            current = _receiver_load(system_name)
        try:
            return _receive(current, request, fresh=fresh, remote_addr=remote_addr)
        except _Stale:
            continue
    # The connection changed under three attempts in a row: the sender will retry.
    raise WebhookRejected(f"the connection of {system_name!r} is changing; retry")


def _receive(
    receiver: _Receiver, request: WebhookRequest, *, fresh: bool, remote_addr: str
) -> WebhookReceipt:
    from .sync import mark_deleted

    connector, body = receiver.connector, request.body
    # The connector's check: HMAC-SHA256 over "<timestamp>.<body>", the timestamp within
    # the tolerance, compared in constant time (rest.py, RestConnector.verify_webhook).
    if not connector.verify_webhook(request):
        if not fresh:
            raise _Stale  # maybe the secret was rotated since: verify with today's
        logger.warning(
            "webhook for %s rejected: bad signature or timestamp (from %s, %d bytes)",
            receiver.system_name,
            remote_addr or "?",
            len(body),
        )
        raise WebhookRejected("invalid signature")
    try:
        event = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WebhookInvalid(f"body is not JSON: {exc}") from None
    if not isinstance(event, dict) or not event.get("id") or not event.get("type"):
        raise WebhookInvalid('an event needs "id" and "type"')
    event_id, event_type = str(event["id"])[:255], str(event["type"])
    routes = receiver.config.get("webhook", {}).get("events", {})
    route = routes.get(event_type)
    if route is None:
        if not fresh and not _is_current(receiver):
            raise _Stale
        return WebhookReceipt(event_id, event_type, None, False, receiver.system_id)
    stream = route["stream"]
    config = receiver.streams.get(stream)
    if config is None:
        raise ApplicationError(f"webhook route {event_type} names unknown stream {stream}")
    mapping = receiver.mapping(stream, config)
    record = lookup(event, route.get("object_path", "data.object"))
    if not isinstance(record, dict):
        raise WebhookInvalid(f"event {event_type} has no object at {route.get('object_path')}")
    # The same shape as a pulled record: the stream's transforms, and deletes flagged.
    transform = getattr(connector, "transform_record", None)
    if transform is not None:
        record = transform(stream, record)
    record = mark_deleted(connector, stream, record)
    if route.get("deleted"):
        record = {**record, DELETED_MARK: True}
    landed = InboundRecord(
        system_id=receiver.system_id,
        entity=mapping.entity,
        stream=stream,
        external_id=mapping.external_id_of(record)[:255],
        payload=record,
        content_hash=payload_hash(record, mapping),
        event_id=event_id,
    )
    record_id = _land(landed, receiver)
    if record_id is not None:
        return WebhookReceipt(event_id, event_type, record_id, False, receiver.system_id)
    # Nothing landed: the connection changed since it was cached, or this is a redelivery.
    if not _is_current(receiver):
        raise _Stale
    seen = (
        InboundRecord.objects.filter(system_id=receiver.system_id, event_id=event_id)
        .values_list("pk", flat=True)
        .first()
    )
    # seen is None: the same content already landed under another event (a pull got there
    # first).
    return WebhookReceipt(event_id, event_type, seen, True, receiver.system_id)


def _is_current(receiver: _Receiver) -> bool:
    """Query: is the connection still enabled, at the version the receiver was built from?"""
    return Connection.objects.filter(
        pk=receiver.connection_id,
        enabled=True,
        updated_at=receiver.version,
        system__name=receiver.system_name,
    ).exists()


# -- the landing INSERT ------------------------------------------------------------------

_FIELDS = [f for f in InboundRecord._meta.concrete_fields if not f.primary_key]


def _land(record: InboundRecord, receiver: _Receiver) -> int | None:
    """Query: land the event in one statement, only while the connection is as cached.

    ``INSERT INTO inboundrecord (…) SELECT <values> FROM connection JOIN system WHERE
    connection.id = … AND enabled AND updated_at = <version> AND system.name = …
    ON CONFLICT DO NOTHING RETURNING id``: the id, or None when the event id or the
    content was already landed, or the connection is no longer the cached one.
    """
    qn = db.ops.quote_name
    values = [f.get_db_prep_save(f.pre_save(record, True), db) for f in _FIELDS]
    connection_meta, system_meta = Connection._meta, SourceSystem._meta
    table, conn_table, system_table = (
        qn(InboundRecord._meta.db_table),
        qn(connection_meta.db_table),
        qn(system_meta.db_table),
    )
    version = connection_meta.get_field("updated_at").get_db_prep_value(
        receiver.version, db, prepared=False
    )
    columns = ", ".join(qn(f.column) for f in _FIELDS)
    if db.vendor == "postgresql":  # typed, whether parameters are bound client or server side
        marks = ", ".join(f"%s::{f.db_type(db)}" for f in _FIELDS)
    else:
        marks = ", ".join(["%s"] * len(_FIELDS))
    sql = (
        f"INSERT INTO {table} ({columns}) SELECT {marks} FROM {conn_table} c "
        f"JOIN {system_table} s ON s.{qn(system_meta.pk.column)} = c.{qn('system_id')} "
        f"WHERE c.{qn(connection_meta.pk.column)} = %s AND c.{qn('enabled')} = %s "
        f"AND c.{qn('updated_at')} = %s AND s.{qn('name')} = %s "
        f"ON CONFLICT DO NOTHING RETURNING {qn(InboundRecord._meta.pk.column)}"
    )
    params = [*values, receiver.connection_id, True, version, receiver.system_name]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return None if row is None else row[0]
