"""Processing landed records: map, then customers' resolve-and-apply, then mark the landing."""

from __future__ import annotations

import logging
from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from customers.db import bulk_update_fast
from customers.models import SourceSystem
from customers.services.apply import (
    ApplyItem,
    ApplyResult,
    DeletePolicy,
    Outcome,
    records_apply,
)
from integrations.models import InboundRecord
from integrations.outbox import outbox_write

from .mapping import Mapping, RecordError

logger = logging.getLogger(__name__)

STATUS_BY_OUTCOME = {
    Outcome.CREATED: InboundRecord.Status.APPLIED,
    Outcome.UPDATED: InboundRecord.Status.APPLIED,
    Outcome.UNCHANGED: InboundRecord.Status.UNCHANGED,
    Outcome.STALE: InboundRecord.Status.STALE,
    Outcome.FAILED: InboundRecord.Status.FAILED,
}
UPDATE_FIELDS = [
    "external_id",
    "source_updated_at",
    "status",
    "outcome",
    "matched_by",
    "detail",
    "error",
    "attempts",
    "object_id",
    "customer_id",
    "processed_at",
]


def records_process(
    *,
    system: SourceSystem,
    mapping: Mapping,
    records: list[InboundRecord],
    delete_policy: str = DeletePolicy.SOFT_DELETE,
) -> list[ApplyResult]:
    """Map and apply landed records of one system and entity; one result per record.

    Runs in one transaction with the landing updates, so a record is marked processed
    exactly when its effects are committed. A record that fails keeps its payload and
    gets its error; the others go on.
    """
    now = timezone.now()
    results: list[ApplyResult | None] = [None] * len(records)
    items: list[tuple[int, ApplyItem]] = []
    for n, record in enumerate(records):
        record.attempts += 1
        record.processed_at = now
        try:
            mapped = mapping.map(record.payload)
        except RecordError as exc:
            results[n] = ApplyResult(Outcome.FAILED, error=str(exc))
            continue
        record.external_id = mapped.external_id[:255]
        record.source_updated_at = mapped.source_updated_at or record.received_at or now
        items.append(
            (
                n,
                ApplyItem(
                    external_id=mapped.external_id,
                    source_updated_at=record.source_updated_at,
                    payload_hash=record.content_hash,
                    values=mapped.values,
                    refs=mapped.refs,
                    record_id=record.pk,
                    deleted=mapped.deleted,
                ),
            )
        )
    with transaction.atomic():
        for wave in _waves(items):
            applied = _apply_safely(system, mapping.entity, wave, delete_policy)
            for (n, _), result in zip(wave, applied, strict=True):
                results[n] = result
        for record, result in zip(records, results, strict=True):
            _mark(record, result)
        bulk_update_fast(records, UPDATE_FIELDS)
        # Same transaction as the apply: a change and its outbox row commit together.
        outbox_write(origin=system, entity=mapping.entity, results=results)
    return results


def _waves(items: list[tuple[int, ApplyItem]]) -> list[list[tuple[int, ApplyItem]]]:
    """Split so each external id appears once per wave, keeping delivery order per id."""
    waves: list[list[tuple[int, ApplyItem]]] = []
    seen: dict[str, int] = defaultdict(int)
    for entry in items:
        k = seen[entry[1].external_id]
        seen[entry[1].external_id] += 1
        if k == len(waves):
            waves.append([])
        waves[k].append(entry)
    return waves


def _apply_safely(
    system: SourceSystem, entity: str, wave: list[tuple[int, ApplyItem]], delete_policy: str
) -> list[ApplyResult]:
    items = [item for _, item in wave]
    try:
        with transaction.atomic():
            return records_apply(
                system=system, entity=entity, items=items, delete_policy=delete_policy
            )
    except Exception:
        # One poisoned record must not take its page down: apply one by one to find it.
        logger.exception("batch apply failed for %s/%s; isolating records", system.name, entity)
    results = []
    for item in items:
        try:
            with transaction.atomic():
                results.extend(
                    records_apply(
                        system=system, entity=entity, items=[item], delete_policy=delete_policy
                    )
                )
        except Exception as exc:
            logger.exception("record %s failed to apply", item.record_id)
            results.append(ApplyResult(Outcome.FAILED, error=f"could not be applied: {exc}"))
    return results


def _mark(record: InboundRecord, result: ApplyResult) -> None:
    record.status = STATUS_BY_OUTCOME[result.outcome]
    record.outcome = result.outcome if record.status == InboundRecord.Status.APPLIED else ""
    record.matched_by = result.matched_by
    record.error = result.error
    record.object_id = result.object_id
    record.customer_id = result.customer_id
    record.detail = {
        k: v
        for k, v in (
            ("applied", result.applied),
            ("stale", result.stale),
            ("rejected", result.rejected),
            ("match", result.match),
        )
        if v
    }
