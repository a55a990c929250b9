"""The outbox: changes that other systems consume, written in the transaction that applied
them, and relayed by a task with the same retry and rate-limit rules as pulls.

A consuming connection declares what it consumes in ``config["consumes"]``::

    {"entity": "deal", "when": {"stage": "closed_won"}, "fields": ["stage"],
     "event": "deal.closed_won", "stream": "orders", "operation": "create",
     "data": {"customer": "$target_customer_id", "description": "$values.name",
              "amount": "$values.amount", "currency": "$values.currency"}}

``fields`` (optional) limits the rule to changes of those canonical fields; ``when``
compares the canonical values after the change; ``operation`` ``update`` targets the
consuming system's own record of the customer; ``"target": "customer"`` makes a create
need that record too (``$target_customer_id``). A change for a customer the target does
not know is skipped with the reason. A change is never sent back to the system it came
from (no echo).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.utils import timezone

from customers.models import ENTITY_MODELS, Entity, ExternalRef, SourceSystem
from customers.services.apply import ApplyResult, Outcome, as_text

from .connectors.base import Change, ConnectorError
from .models import Connection, OutboxMessage

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 8


def consumer_rules(entity: str) -> list[tuple[Connection, dict[str, Any]]]:
    rules = []
    for connection in Connection.objects.filter(enabled=True).select_related("system"):
        for rule in connection.config.get("consumes", []):
            if rule.get("entity") == entity:
                rules.append((connection, rule))
    return rules


def outbox_write(*, origin: SourceSystem, entity: str, results: Iterable[ApplyResult]) -> int:
    """Write outbox rows for applied changes that other systems consume.

    Precondition: called inside the transaction that applied ``results``, so a change and
    its outbox row commit together or not at all.
    """
    changed = [
        r
        for r in results
        if r.outcome in (Outcome.CREATED, Outcome.UPDATED) and r.applied and r.object_id
    ]
    if not changed:
        return 0
    rules = [(c, rule) for c, rule in consumer_rules(entity) if c.system_id != origin.pk]
    if not rules:
        return 0
    model = ENTITY_MODELS[entity]
    objects = model.objects.in_bulk([r.object_id for r in changed])
    messages = []
    for result in changed:
        obj = objects.get(result.object_id)
        if obj is None:
            continue
        values = {f.name: as_text(getattr(obj, f.attname)) for f in model._meta.concrete_fields}
        for connection, rule in rules:
            fields = rule.get("fields")
            if fields and not set(fields) & set(result.applied):
                continue
            if any(values.get(k) != str(v) for k, v in rule.get("when", {}).items()):
                continue
            messages.append(
                OutboxMessage(
                    target=connection.system,
                    origin=origin,
                    entity=entity,
                    object_id=result.object_id,
                    customer_id=result.customer_id,
                    event=rule.get("event", f"{entity}.changed"),
                    stream=rule["stream"],
                    operation=rule.get("operation", "update"),
                    payload={"values": values, "applied": result.applied},
                    next_attempt_at=timezone.now(),
                )
            )
    OutboxMessage.objects.bulk_create(messages)
    return len(messages)


def _render(template: Any, context: dict[str, Any]) -> Any:
    if isinstance(template, dict):
        return {k: _render(v, context) for k, v in template.items()}
    if isinstance(template, list):
        return [_render(v, context) for v in template]
    if isinstance(template, str) and template.startswith("$"):
        node: Any = context
        for part in template[1:].split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return node
    return template


def _change_for(message: OutboxMessage, connection: Connection) -> Change | None:
    rule = next(
        (
            r
            for r in connection.config.get("consumes", [])
            if r.get("entity") == message.entity
            and r.get("stream") == message.stream
            and r.get("event", f"{message.entity}.changed") == message.event
        ),
        None,
    )
    if rule is None:
        return None
    target_ref = (
        ExternalRef.objects.filter(
            system=message.target, entity=Entity.CUSTOMER, customer_id=message.customer_id
        )
        .values_list("external_id", flat=True)
        .first()
    )
    context = {
        "values": message.payload.get("values", {}),
        "target_customer_id": target_ref,
        "object_id": message.object_id,
        "customer_id": message.customer_id,
    }
    # A change about a customer the target does not know cannot be delivered: skipped,
    # with the reason, rather than sent incomplete.
    needs_target = message.operation == "update" or rule.get("target") == "customer"
    if needs_target and target_ref is None:
        return None
    external_id = target_ref if message.operation == "update" else None
    return Change(
        stream=message.stream,
        operation=message.operation,
        external_id=external_id,
        data=_render(rule.get("data", {}), context),
        idempotency_key=f"concord-outbox-{message.pk}",
    )


def outbox_relay(*, limit: int = 100) -> dict[str, int]:
    """Push due outbox messages. Claims rows with SELECT … FOR UPDATE SKIP LOCKED so
    several relays never send one message twice; each message commits on its own."""
    from .sync import backoff_seconds, connection_connector, rate_limit_acquire

    counts = {"sent": 0, "retry": 0, "dead": 0, "skipped": 0}
    # One connection and one connector per target for the whole relay: building a
    # connector decrypts credentials, and an OAuth connector keeps its token between pushes.
    targets: dict[int, tuple[Connection, Any]] = {}
    for _ in range(limit):
        with transaction.atomic():
            message = (
                OutboxMessage.objects.select_for_update(skip_locked=True)
                .filter(status=OutboxMessage.Status.PENDING, next_attempt_at__lte=timezone.now())
                .order_by("id")
                .first()
            )
            if message is None:
                break
            if message.target_id not in targets:
                connection = Connection.objects.select_related("system").get(
                    system_id=message.target_id
                )
                targets[message.target_id] = (connection, None)
            connection, connector = targets[message.target_id]
            message.attempts += 1
            change = _change_for(message, connection)
            if change is None:
                message.status = OutboxMessage.Status.SKIPPED
                message.last_error = (
                    f"{connection.system.name} has no record of customer #{message.customer_id} "
                    "(or no rule for this event)"
                )
                counts["skipped"] += 1
            else:
                try:
                    rate_limit_acquire(
                        system=connection.system,
                        rate=connection.rate_limit_per_second,
                        burst=connection.rate_limit_burst,
                        max_wait=10,
                    )
                    if connector is None:
                        connector = connection_connector(connection)
                        targets[message.target_id] = (connection, connector)
                    result = connector.push(change)
                except ConnectorError as exc:
                    message.last_error = exc.message
                    if exc.permanent or message.attempts >= MAX_ATTEMPTS:
                        message.status = OutboxMessage.Status.DEAD
                        counts["dead"] += 1
                    else:
                        delay = backoff_seconds(message.attempts, retry_after=exc.retry_after)
                        message.next_attempt_at = timezone.now() + dt.timedelta(seconds=delay)
                        counts["retry"] += 1
                else:
                    message.status = OutboxMessage.Status.SENT
                    message.sent_at = timezone.now()
                    message.response = {"external_id": result.external_id}
                    message.last_error = ""
                    counts["sent"] += 1
            message.save()
    return counts


def merge_event_write(record, action: str) -> int:
    """Outbox rows telling consuming systems that two customers were merged or unmerged.

    Registered in ``customers.services.merge.MERGE_LISTENERS`` and so called inside the
    merge transaction. A consuming connection opts in with a ``consumes`` rule for entity
    ``customer`` whose ``event`` is ``customer.merged`` or ``customer.unmerged``.
    """
    event = "customer.merged" if action == "merge" else "customer.unmerged"
    refs = {
        ref.system_id: ref.external_id
        for ref in ExternalRef.objects.filter(
            entity=Entity.CUSTOMER, object_id__in=[record.survivor_id, record.merged_id]
        )
    }
    messages = [
        OutboxMessage(
            target=connection.system,
            entity=Entity.CUSTOMER,
            object_id=record.survivor_id,
            customer_id=record.survivor_id,
            event=event,
            stream=rule["stream"],
            operation=rule.get("operation", "update"),
            payload={
                "values": {
                    "survivor_id": record.survivor_id,
                    "merged_id": record.merged_id,
                    "merge_id": record.pk,
                    "target_external_id": refs.get(connection.system_id),
                }
            },
            next_attempt_at=timezone.now(),
        )
        for connection, rule in consumer_rules(Entity.CUSTOMER)
        if rule.get("event") == event
    ]
    OutboxMessage.objects.bulk_create(messages)
    return len(messages)
