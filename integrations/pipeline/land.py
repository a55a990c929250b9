"""Landing: store every received record raw, committed before any processing."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from customers.models import SourceSystem
from integrations.connectors.files import RawRow
from integrations.models import InboundRecord, SyncRun

from .mapping import Mapping, content_hash

# Landing rows in these states are processed again when the same content arrives.
RETRYABLE = (InboundRecord.Status.PENDING, InboundRecord.Status.FAILED)


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
    """
    hashes = [content_hash(row.payload, mapping) for row in rows]
    with transaction.atomic():
        existing = set(
            InboundRecord.objects.filter(
                system=system, entity=run.entity, content_hash__in=hashes
            ).values_list("content_hash", flat=True)
        )
        fresh: dict[str, InboundRecord] = {}
        for row, digest in zip(rows, hashes, strict=True):
            if digest in existing or digest in fresh:
                continue
            fresh[digest] = InboundRecord(
                system=system,
                entity=run.entity,
                external_id=mapping.external_id_of(row.payload)[:255],
                payload=row.payload,
                content_hash=digest,
                run=run,
                stream=run.stream,
                position=row.position,
                status=InboundRecord.Status.FAILED if row.error else InboundRecord.Status.PENDING,
                error=row.error,
            )
        # Another process may land the same content concurrently; the unique constraint
        # makes that a no-op and the re-read below picks up its row.
        InboundRecord.objects.bulk_create(fresh.values(), ignore_conflicts=True)
        stored = {
            r.content_hash: r
            for r in InboundRecord.objects.filter(
                system=system, entity=run.entity, content_hash__in=hashes
            )
        }
    landed: list[Landed] = []
    seen: set[str] = set()
    for row, digest in zip(rows, hashes, strict=True):
        record = stored[digest]
        is_new = digest in fresh and digest not in seen
        first = digest not in seen
        seen.add(digest)
        if row.error:
            landed.append(Landed(record, is_new, process=False, outcome="failed"))
        elif first and (is_new or record.status in RETRYABLE):
            landed.append(Landed(record, is_new, process=True))
        else:
            landed.append(Landed(record, is_new, process=False, outcome="unchanged"))
    return landed
