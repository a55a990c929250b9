"""Pipeline services: file import, replay of failed records, pending-record sweep."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from customers.db import analyze_new_tables
from customers.errors import ApplicationError
from customers.models import Customer, ExternalRef, FieldProvenance, IdentityKey, SourceSystem
from customers.services.apply import ApplyResult, Outcome
from customers.services.systems import system_get_or_create
from integrations.connectors.files import RawRow, read_rows
from integrations.models import InboundRecord, SyncRun

from .backfill import BackfillError, pages_import_parallel
from .pipeline.land import records_land
from .pipeline.mapping import Mapping
from .pipeline.process import records_process

OUTCOMES = ("created", "updated", "unchanged", "stale", "failed")


class AccountingError(ApplicationError):
    """The outcomes of a run do not add up to what it read: a bug, never a log line."""


@dataclass
class RecordProblem:
    position: int | None
    external_id: str
    message: str
    record_id: int | None = None

    def __str__(self) -> str:
        where = f"row {self.position}" if self.position else f"record {self.record_id}"
        who = f" ({self.external_id})" if self.external_id else ""
        return f"{where}{who}: {self.message}"


@dataclass
class RunSummary:
    run_id: int | None
    dry_run: bool = False
    read: int = 0
    landed: int = 0
    counts: Counter = field(default_factory=Counter)
    linked: int = 0
    problems: list[RecordProblem] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts[o] for o in OUTCOMES)

    def as_dict(self) -> dict[str, int]:
        return {"read": self.read, "landed": self.landed} | {o: self.counts[o] for o in OUTCOMES}


def _pages(rows: Iterable[RawRow], size: int) -> Iterator[list[RawRow]]:
    iterator = iter(rows)
    while page := list(itertools.islice(iterator, size)):
        yield page


def file_import(
    *,
    system_name: str,
    entity: str,
    mapping: Mapping,
    path: str | Path,
    dry_run: bool = False,
    system_kind: str | None = None,
    page_size: int | None = None,
    max_problems: int = 20,
    progress: Callable[[RunSummary], None] | None = None,
    workers: int = 1,
) -> RunSummary:
    """Land every row of a CSV or JSON Lines file and run it through the pipeline.

    Each page is landed in its own transaction, then processed. With ``dry_run`` the whole
    import runs in one transaction that is rolled back: the summary is exactly what a real
    import would do, and nothing is written. With ``workers`` > 1 (PostgreSQL only) the
    pages are spread over that many processes (``integrations.backfill``). Raises
    ``FileReadError`` when the file itself cannot be read and ``ApplicationError`` for a
    bad system name.
    """
    if mapping.entity != entity:
        raise ApplicationError(f"the mapping is for {mapping.entity}, not {entity}")
    if workers < 1:
        raise ApplicationError("workers must be 1 or more")
    parallel = workers > 1 and not dry_run and connection.vendor == "postgresql"
    rows = read_rows(path)
    first = next(rows, None)  # surfaces FileReadError before anything is written
    size = page_size or settings.CONCORD_PAGE_SIZE
    # A real import commits page by page; a dry run is one transaction, rolled back.
    with transaction.atomic() if dry_run else contextlib.nullcontext():
        system = system_get_or_create(name=system_name, kind=system_kind)
        run = SyncRun.objects.create(
            system=system,
            entity=entity,
            mode=SyncRun.Mode.FILE,
            source=Path(path).name,
            mapping=mapping.as_dict(),
        )
        summary = RunSummary(run_id=run.pk, dry_run=dry_run)

        def page_done(page_summary: RunSummary) -> None:
            summary_merge(summary, page_summary, max_problems)
            if progress:
                progress(summary)

        if parallel:
            rows.close()
            try:
                pages_import_parallel(
                    system=system,
                    run=run,
                    mapping=mapping,
                    path=path,
                    page_size=size,
                    workers=workers,
                    on_page=page_done,
                )
            except BackfillError as exc:
                # Pages applied stay applied; rows landed but not processed stay pending
                # for the sweep (process_pending_records) or a replay.
                SyncRun.objects.filter(pk=run.pk).update(
                    status=SyncRun.Status.FAILED, error=str(exc)[:2000], finished_at=timezone.now()
                )
                raise
        else:
            all_rows = itertools.chain([first] if first is not None else [], rows)
            for page in _pages(all_rows, size):
                page_done(run_page(system=system, run=run, mapping=mapping, rows=page))
        run_finish(run=run, summary=summary)
        if dry_run:
            transaction.set_rollback(True)
            summary.run_id = None
    return summary


def run_page(
    *,
    system: SourceSystem,
    run: SyncRun,
    mapping: Mapping,
    rows: list[RawRow],
    delete_policy: str = "soft_delete",
) -> RunSummary:
    """Land then process one page of rows, and add its counts to the run."""
    with _gc_paused():
        return _run_page(
            system=system, run=run, mapping=mapping, rows=rows, delete_policy=delete_policy
        )


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a page is processed.

    A page makes some hundred thousand short-lived objects and next to no reference
    cycles (they are freed by reference counting); collecting as they are made traverses
    every live object again and again, about a seventh of a backfill's Python time when
    measured. Collection resumes after the page and catches up at once.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _run_page(
    *,
    system: SourceSystem,
    run: SyncRun,
    mapping: Mapping,
    rows: list[RawRow],
    delete_policy: str,
) -> RunSummary:
    summary = RunSummary(run_id=run.pk, read=len(rows))
    landed = records_land(system=system, run=run, mapping=mapping, rows=rows)
    summary.landed = sum(entry.is_new for entry in landed)
    to_process = [entry.record for entry in landed if entry.process]
    results = iter(
        records_process(
            system=system, mapping=mapping, records=to_process, delete_policy=delete_policy
        )
    )
    for entry in landed:
        if entry.process:
            result: ApplyResult = next(results)
            outcome, error = str(result.outcome), result.error
            summary.linked += result.linked
        else:
            outcome, error = entry.outcome, entry.record.error if entry.outcome == "failed" else ""
        summary.counts[outcome] += 1
        if error:
            summary.problems.append(
                RecordProblem(
                    entry.record.position, entry.record.external_id, error, entry.record.pk
                )
            )
    # A backfill into new tables: statistics before the next page's lookups are planned.
    analyze_new_tables(InboundRecord, ExternalRef, IdentityKey, FieldProvenance, Customer)
    SyncRun.objects.filter(pk=run.pk).update(
        fetched=F("fetched") + summary.read,
        landed=F("landed") + summary.landed,
        linked=F("linked") + summary.linked,
        **{o: F(o) + summary.counts[o] for o in OUTCOMES},
    )
    return summary


def run_finish(*, run: SyncRun, summary: RunSummary, error: str = "") -> SyncRun:
    """Close a run. Outcomes must add up to what was read: otherwise the run fails loudly."""
    run.refresh_from_db()
    run.finished_at = timezone.now()
    if run.outcome_total != run.fetched:
        run.status = SyncRun.Status.FAILED
        run.error = f"accounting error: read {run.fetched}, outcomes add up to {run.outcome_total}"
        run.save(update_fields=["status", "error", "finished_at"])
        raise AccountingError(run.error)
    if error:
        run.status, run.error = SyncRun.Status.FAILED, error
    elif run.failed:
        run.status = SyncRun.Status.PARTIAL
    else:
        run.status = SyncRun.Status.SUCCEEDED
    run.save(update_fields=["status", "error", "finished_at"])
    return run


def summary_merge(summary: RunSummary, page: RunSummary, max_problems: int) -> None:
    """Add one page's counts and first problems to a run's summary."""
    summary.read += page.read
    summary.landed += page.landed
    summary.linked += page.linked
    summary.counts.update(page.counts)
    room = max_problems - len(summary.problems)
    if room > 0:
        summary.problems.extend(page.problems[:room])


def records_replay(*, record_ids: Iterable[int]) -> RunSummary:
    """Process landed records again (failed or pending ones), with the mapping of their run.

    Rows are claimed with SELECT … FOR UPDATE SKIP LOCKED where the database supports it,
    so two replays (or a replay and the pending sweep) never process one record twice.
    """
    summary = RunSummary(run_id=None)
    ids = list(record_ids)
    for chunk_start in range(0, len(ids), settings.CONCORD_PAGE_SIZE):
        chunk = ids[chunk_start : chunk_start + settings.CONCORD_PAGE_SIZE]
        with transaction.atomic():
            records = list(
                InboundRecord.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(
                    pk__in=chunk,
                    status__in=(InboundRecord.Status.FAILED, InboundRecord.Status.PENDING),
                )
                .select_related("system", "run")
                .order_by("pk")
            )
            groups: dict[tuple, list[InboundRecord]] = {}
            for record in records:
                key = (record.system_id, record.entity, record.run_id, record.stream)
                groups.setdefault(key, []).append(record)
            for group in groups.values():
                head = group[0]
                mapping = _replay_mapping(head)
                if mapping is None:
                    for record in group:
                        summary.read += 1
                        summary.counts["failed"] += 1
                        summary.problems.append(
                            RecordProblem(
                                None, record.external_id, "no mapping to replay with", record.pk
                            )
                        )
                    continue
                connection = getattr(head.system, "connection", None)
                results = records_process(
                    system=head.system,
                    mapping=mapping,
                    records=group,
                    delete_policy=connection.delete_policy if connection else "soft_delete",
                )
                for record, result in zip(group, results, strict=True):
                    summary.read += 1
                    summary.counts[str(result.outcome)] += 1
                    summary.linked += result.linked
                    if result.outcome == Outcome.FAILED:
                        summary.problems.append(
                            RecordProblem(
                                record.position, record.external_id, result.error, record.pk
                            )
                        )
    return summary


def _replay_mapping(record: InboundRecord) -> Mapping | None:
    """The mapping a record was landed with: its run's, or its connection stream's."""
    if record.run is not None and record.run.mapping:
        return Mapping.from_dict(record.run.mapping, entity=record.entity)
    if record.stream:
        connection = getattr(record.system, "connection", None)
        config = connection.streams.get(record.stream) if connection else None
        if config and config.get("mapping"):
            return Mapping.from_dict(config["mapping"], entity=record.entity)
    return None


def pending_records_process(*, older_than_seconds: int | None = None) -> RunSummary:
    """Process records that were landed but never processed (their importer died)."""
    grace = (
        settings.CONCORD_PENDING_GRACE_SECONDS if older_than_seconds is None else older_than_seconds
    )
    cutoff = timezone.now() - dt.timedelta(seconds=grace)
    ids = InboundRecord.objects.filter(
        status=InboundRecord.Status.PENDING, received_at__lte=cutoff
    ).values_list("pk", flat=True)[:10_000]
    return records_replay(record_ids=list(ids))
