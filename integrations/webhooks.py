"""Webhook receipt: verify, land, answer fast; a task processes what was landed."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from django.db import transaction

from customers.errors import ApplicationError

from .connectors.base import WebhookRequest
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


def webhook_receive(
    *, system_name: str, headers: dict[str, str], body: bytes, remote_addr: str = ""
) -> WebhookReceipt:
    """Verify a webhook and land its event; the caller enqueues processing on commit.

    Redeliveries (same event id, or identical content) land nothing new.
    """
    from .sync import connection_connector, mark_deleted

    connection = (
        Connection.objects.select_related("system")
        .filter(system__name=system_name, enabled=True)
        .first()
    )
    if connection is None:
        raise WebhookRejected(f"no enabled connection for {system_name!r}")
    connector = connection_connector(connection)
    if not connector.verify_webhook(WebhookRequest(headers=headers, body=body)):
        logger.warning(
            "webhook for %s rejected: bad signature or timestamp (from %s, %d bytes)",
            system_name,
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
    routes = connection.config.get("webhook", {}).get("events", {})
    route = routes.get(event_type)
    if route is None:
        return WebhookReceipt(event_id, event_type, None, duplicate=False)
    stream = route["stream"]
    config = connection.streams.get(stream)
    if config is None:
        raise ApplicationError(f"webhook route {event_type} names unknown stream {stream}")
    mapping = Mapping.from_dict(config["mapping"], entity=config["entity"])
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
    seen = InboundRecord.objects.filter(system=connection.system, event_id=event_id)
    if seen.exists():
        return WebhookReceipt(event_id, event_type, seen.first().pk, duplicate=True)
    with transaction.atomic():
        InboundRecord.objects.bulk_create(
            [
                InboundRecord(
                    system=connection.system,
                    entity=mapping.entity,
                    stream=stream,
                    external_id=mapping.external_id_of(record)[:255],
                    payload=record,
                    content_hash=payload_hash(record, mapping),
                    event_id=event_id,
                )
            ],
            ignore_conflicts=True,
        )
        landed = InboundRecord.objects.filter(system=connection.system, event_id=event_id).first()
    if landed is None:
        # Same content already landed under another event (a pull got there first).
        return WebhookReceipt(event_id, event_type, None, duplicate=True)
    return WebhookReceipt(event_id, event_type, landed.pk, duplicate=False)
