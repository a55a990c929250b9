"""Processing landed webhook events: one task drains a system's pending events in batches.

A webhook answers as soon as its event is landed; the drain applies what has
accumulated, up to ``CONCORD_PAGE_SIZE`` events per batch, through the same pipeline as
pulls and imports (``records_process``: map, resolve, apply, provenance, outbox).

Guarantees:

- **Nothing applied twice.** Each batch claims its rows with ``SELECT … FOR UPDATE SKIP
  LOCKED`` (PostgreSQL) in the transaction that processes them, so a drain, a replay and
  the pending sweep never take the same row. Drains of one system also take a
  transaction-level advisory lock per batch, so two drains of one system alternate batch
  by batch instead of running side by side: each batch claims the oldest pending events
  after the previous one committed, which keeps every record's events in delivery order
  and keeps two batches from resolving the same new customer at once. SQLite has no row
  locks and needs none: it has one writer at a time (``BEGIN IMMEDIATE``).
- **Delivery order per record.** A batch is claimed oldest first; within it, events of one
  record are applied one after the other (``records_process`` splits them into waves), and
  the ownership rules let the newest source time win whatever the arrival order.
- **Nothing left pending.** ``webhook_drain_enqueue`` debounces: it enqueues a drain
  ``CONCORD_WEBHOOK_DRAIN_DELAY_SECONDS`` (1 s) ahead and sets a cache flag that lives no
  longer than that delay; while the flag is set no other drain is enqueued. An event that
  sees the flag was committed before the flag expires, hence before the queued drain
  starts, and that drain loops until no event is pending. The drain also deletes the flag
  when it starts (with a shared cache such as Redis the guarantee then holds whatever the
  clocks say). If enqueueing fails (broker down), the event stays pending and the
  ``process_pending_records`` beat task (every 2 minutes) applies it.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import connection as db
from django.db import transaction

from customers.models import SourceSystem
from customers.services.apply import Outcome

from .models import Connection, InboundRecord
from .pipeline.mapping import Mapping, MappingConfigError
from .pipeline.process import records_process
from .services import RecordProblem, RunSummary

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock(namespace, system id): only drains of one system exclude each other.
LOCK_NAMESPACE = 0x5EB0  # "webhook drain"
FLAG_KEY = "concord:webhook-drain:{}"
MAX_PROBLEMS = 20


def drain_delay_seconds() -> int:
    return max(1, int(getattr(settings, "CONCORD_WEBHOOK_DRAIN_DELAY_SECONDS", 1)))


# -- enqueue (debounced) -------------------------------------------------------------------


def webhook_drain_enqueue(system_id: int) -> bool:
    """Ask for a drain of the system's pending events; True when one was enqueued.

    Call it after the event's commit (``transaction.on_commit``). A burst of events
    enqueues one drain per delay window, not one per event.
    """
    from . import tasks

    task = tasks.process_webhook_events
    try:
        if task.app.conf.task_always_eager:
            task.delay(system_id)  # no ETA in eager mode: run now, no debounce
            return True
        delay = drain_delay_seconds()
        try:
            # The flag lives no longer than the countdown: whoever sees it is committed
            # before the queued drain starts.
            if not cache.add(FLAG_KEY.format(system_id), 1, timeout=delay):
                return False
        except Exception:
            logger.warning("cache unavailable: enqueueing a webhook drain undebounced")
        task.apply_async(args=[system_id], countdown=delay)
        return True
    except Exception:
        if task.app.conf.task_always_eager and task.app.conf.task_eager_propagates:
            raise
        # The event is landed and committed: the pending sweep (beat) will apply it.
        logger.exception("could not enqueue the webhook drain of system %s", system_id)
        return False


# -- drain ---------------------------------------------------------------------------------


@dataclass
class DrainSummary:
    batches: int = 0
    summary: RunSummary = field(default_factory=lambda: RunSummary(run_id=None))

    def as_dict(self) -> dict[str, int]:
        return {"batches": self.batches} | self.summary.as_dict()


def webhook_events_process(
    *, system_id: int, batch_size: int | None = None, max_batches: int | None = None
) -> DrainSummary:
    """Apply the system's pending webhook events, oldest first, a batch per transaction,
    until none is pending (or ``max_batches`` were done). Safe to run twice at once."""
    size = batch_size or settings.CONCORD_PAGE_SIZE
    try:
        cache.delete(FLAG_KEY.format(system_id))  # events from now on enqueue a new drain
    except Exception:
        logger.warning("cache unavailable: could not clear the webhook drain flag")
    drained = DrainSummary()
    system = SourceSystem.objects.filter(pk=system_id).first()
    if system is None:
        return drained
    connection = Connection.objects.filter(system_id=system_id).first()
    mappings: dict[tuple[str, str], Mapping | None] = {}
    while max_batches is None or drained.batches < max_batches:
        with transaction.atomic():
            _lock_system(system_id)
            records = webhook_events_claim(system_id=system_id, limit=size)
            if not records:
                break
            drained.batches += 1
            _process_batch(system, connection, records, mappings, drained.summary)
    if drained.batches:
        logger.info("webhook drain of %s: %s", system.name, drained.as_dict())
    return drained


def webhook_events_claim(*, system_id: int, limit: int) -> list[InboundRecord]:
    """Query: the oldest pending webhook events of the system, locked for this transaction.

    ``SELECT … WHERE system_id = … AND status = 'pending' AND event_id <> '' ORDER BY
    received_at, id LIMIT … FOR UPDATE OF inboundrecord SKIP LOCKED`` on PostgreSQL (rows
    another transaction holds are skipped, not waited for); a plain SELECT on SQLite.
    Records landed by pulls and imports (no event id) are left to their own run.
    """
    return list(
        InboundRecord.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(system_id=system_id, status=InboundRecord.Status.PENDING)
        .exclude(event_id="")
        .order_by("received_at", "pk")[:limit]
    )


def _lock_system(system_id: int) -> None:
    """Query (PostgreSQL): wait for other drains of this system to finish their batch."""
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, system_id])


def _process_batch(
    system: SourceSystem,
    connection: Connection | None,
    records: list[InboundRecord],
    mappings: dict[tuple[str, str], Mapping | None],
    summary: RunSummary,
) -> None:
    """Group a claimed batch by (entity, stream) and run each group through the pipeline.

    Groups go in the order of their first event, customers first (other entities refer
    to them); inside a group the delivery order is kept.
    """
    groups: dict[tuple[str, str], list[InboundRecord]] = {}
    for record in records:
        groups.setdefault((record.entity, record.stream), []).append(record)
    order = sorted(groups, key=lambda key: key[0] != "customer")
    delete_policy = connection.delete_policy if connection else "soft_delete"
    counts: Counter = Counter()
    for key in order:
        group = groups[key]
        if key not in mappings:
            mappings[key] = _stream_mapping(connection, *key)
        mapping = mappings[key]
        summary.read += len(group)
        if mapping is None:
            # The route's stream is gone from the configuration: a dead letter to replay
            # once it is back.
            message = f"no mapping for stream {key[1]!r}"
            InboundRecord.objects.filter(pk__in=[r.pk for r in group]).update(
                status=InboundRecord.Status.FAILED, error=message
            )
            counts["failed"] += len(group)
            for record in group:
                _problem(summary, RecordProblem(None, record.external_id, message, record.pk))
            continue
        results = records_process(
            system=system, mapping=mapping, records=group, delete_policy=delete_policy
        )
        for record, result in zip(group, results, strict=True):
            counts[str(result.outcome)] += 1
            summary.linked += result.linked
            if result.outcome == Outcome.FAILED:
                _problem(
                    summary,
                    RecordProblem(record.position, record.external_id, result.error, record.pk),
                )
    summary.counts.update(counts)


def _stream_mapping(connection: Connection | None, entity: str, stream: str) -> Mapping | None:
    config = connection.streams.get(stream) if connection and stream else None
    if not config or not config.get("mapping"):
        return None
    try:
        return Mapping.from_dict(config["mapping"], entity=entity)
    except MappingConfigError:
        logger.exception("the mapping of stream %s is invalid", stream)
        return None


def _problem(summary: RunSummary, problem: RecordProblem) -> None:
    if len(summary.problems) < MAX_PROBLEMS:
        summary.problems.append(problem)
