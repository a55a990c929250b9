"""Landing: store every received record raw, committed before any processing."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from customers.db import JsonText, bulk_insert, instance_maker
from customers.models import SourceSystem
from integrations.connectors.files import RawRow
from integrations.models import InboundRecord, SyncRun

from .mapping import Mapping, content_hash_of_text, payload_text

# Landing rows in these states are processed again when the same content arrives.
RETRYABLE = (InboundRecord.Status.PENDING, InboundRecord.Status.FAILED)

# What processing and reporting need of a row landed earlier (its payload is in hand:
# the same content hash is the same payload).
_KNOWN = [
    "id",
    "status",
    "error",
    "attempts",
    "external_id",
    "position",
    "source_updated_at",
    "received_at",
]
_LANDED = [
    "system",
    "entity",
    "external_id",
    "payload",
    "content_hash",
    "run",
    "stream",
    "position",
    "status",
    "error",
    "received_at",
]
_LANDED_FIELDS = [InboundRecord._meta.get_field(name) for name in _LANDED]
_KEYS = ["content_hash", "pk"]
_new_record = instance_maker(InboundRecord)


@dataclass
class Landed:
    record: InboundRecord
    is_new: bool  # this delivery stored the row (first time the content was seen)
    process: bool  # the row should go through mapping and apply now
    outcome: str = ""  # set when the row is settled without processing


def records_land(
    *, system: SourceSystem, run: SyncRun, mapping: Mapping, rows: list[RawRow]
) -> list[Landed]:
    """Land one page of rows in its own transaction; one ``Landed`` per row, in order.

    Content already landed is not stored twice: a redelivery of applied content settles
    as unchanged, a redelivery of pending or failed content is processed again. Rows the
    reader could not parse land as failed with the reader's error.

    A fixed number of statements whatever the page size: read what is known of these
    hashes (not their payloads), insert the new content, and only if another process
    landed some of it meanwhile, skip and read those rows too. The records are built from
    the rows in hand, not read back.
    """
    texts = [payload_text(row.payload) for row in rows]
    hashes = [content_hash_of_text(text, mapping) for text in texts]
    now = timezone.now()
    with transaction.atomic():
        known = _known(system, run.entity, set(hashes))
        fresh: dict[str, InboundRecord] = {}
        for row, digest in zip(rows, hashes, strict=True):
            if digest in known or digest in fresh:
                continue
            fresh[digest] = _record(
                system,
                run,
                entity=run.entity,
                external_id=mapping.external_id_of(row.payload)[:255],
                payload=row.payload,
                content_hash=digest,
                stream=run.stream,
                position=row.position,
                status=InboundRecord.Status.FAILED if row.error else InboundRecord.Status.PENDING,
                error=row.error,
                received_at=now,
            )
        # The payload goes in as the text just hashed: encoded once, not twice.
        text_of = dict(zip(hashes, texts, strict=True))
        inserted = _insert(
            [
                [
                    JsonText(text_of[r.content_hash])
                    if f.attname == "payload"
                    else getattr(r, f.attname)
                    for f in _LANDED_FIELDS
                ]
                for r in fresh.values()
            ]
        )
        raced = set(fresh) - set(inserted)
        if raced:
            known |= _known(system, run.entity, raced)
    stored: dict[str, InboundRecord] = {}
    for digest, record in fresh.items():
        if digest in inserted:
            record.pk = inserted[digest]
            record._state.adding = False
            stored[digest] = record
    for row, digest in zip(rows, hashes, strict=True):
        if digest in known and digest not in stored:
            values = dict(zip(_KNOWN, known[digest], strict=True))
            stored[digest] = _record(
                system,
                None,
                entity=run.entity,
                payload=row.payload,
                content_hash=digest,
                **values,
            )
            stored[digest]._state.adding = False
    landed: list[Landed] = []
    seen: set[str] = set()
    for row, digest in zip(rows, hashes, strict=True):
        record = stored[digest]
        is_new = digest in inserted and digest not in seen
        first = digest not in seen
        seen.add(digest)
        if row.error:
            landed.append(Landed(record, is_new, process=False, outcome="failed"))
        elif first and (is_new or record.status in RETRYABLE):
            landed.append(Landed(record, is_new, process=True))
        else:
            landed.append(Landed(record, is_new, process=False, outcome="unchanged"))
    return landed


def _record(system: SourceSystem, run: SyncRun | None, **values) -> InboundRecord:
    """A landing row built from what is in hand, its system (and run) cached on it."""
    record = _new_record(system_id=system.pk, **values)
    record._state.fields_cache["system"] = system
    if run is not None:
        record.run_id = run.pk
        record._state.fields_cache["run"] = run
    return record


def _insert(rows: list[list]) -> dict[str, int]:
    """Insert new landing rows; the primary key of each row stored, by content hash."""
    if not rows:
        return {}
    try:
        with transaction.atomic():
            return dict(bulk_insert(InboundRecord, _LANDED, rows, returning=_KEYS))
    except IntegrityError:
        # Another process landed some of this content meanwhile (rare, hence the plain
        # insert first): skip those rows; the caller reads them back like known rows.
        return dict(
            bulk_insert(InboundRecord, _LANDED, rows, ignore_conflicts=True, returning=_KEYS)
        )


def _known(system: SourceSystem, entity: str, hashes: set[str]) -> dict[str, tuple]:
    """What is stored of the landing rows with these content hashes, by hash."""
    if not hashes:
        return {}
    rows = (
        InboundRecord.objects.filter(system=system, entity=entity, content_hash__in=hashes)
        .values_list("content_hash", *_KNOWN)
        .order_by()
    )
    return {digest: values for digest, *values in rows}
