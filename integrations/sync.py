"""Incremental pulls: lease a stream, pull pages through the connector, land and process
each page, then advance the cursor. Called by Celery tasks and by ``manage.py sync``."""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from customers.errors import ApplicationError
from customers.models import SourceSystem

from . import crypto
from .connectors.base import Connector, ConnectorError
from .connectors.files import RawRow
from .models import Connection, RateBucket, StreamState, SyncRun
from .pipeline.mapping import DELETED_MARK, Mapping, MappingConfigError
from .services import RunSummary, run_finish, run_page, summary_merge

logger = logging.getLogger(__name__)


class StreamBusy(ApplicationError):
    """Another worker holds the stream's lease."""

    def __init__(self, message: str, *, retry_in: float) -> None:
        super().__init__(message)
        self.retry_in = retry_in


class LeaseLost(ApplicationError):
    """The lease expired and another worker took the stream: stop without touching it."""


def backoff_seconds(
    attempt: int,
    *,
    retry_after: float | None = None,
    base: float = 2.0,
    cap: float = 300.0,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with full jitter, never shorter than the server's Retry-After."""
    rng = rng or random.SystemRandom()
    delay = rng.uniform(0, min(cap, base * 2**attempt))
    return max(delay, retry_after or 0.0)


def connection_connector(connection: Connection) -> Connector:
    from .connectors.registry import build_connector

    return build_connector(
        connection.connector, connection.config, crypto.decrypt(connection.credentials_encrypted)
    )


def mark_deleted(connector: Connector, stream: str, record: dict) -> dict:
    """Flag a record the source reports deleted, so mapping routes it to the delete policy."""
    is_deleted = getattr(connector, "is_deleted", None)
    if is_deleted is not None and is_deleted(stream, record):
        return {**record, DELETED_MARK: True}
    return record


# -- stream lease ------------------------------------------------------------------------


def stream_lease_acquire(
    *, connection: Connection, stream: str, owner: str, seconds: int | None = None
) -> StreamState:
    """Claim the stream with a conditional UPDATE; raises StreamBusy if someone holds it."""
    try:
        with transaction.atomic():
            StreamState.objects.get_or_create(connection=connection, stream=stream)
    except IntegrityError:
        pass
    now = timezone.now()
    seconds = seconds or settings.CONCORD_STREAM_LEASE_SECONDS
    claimed = StreamState.objects.filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=owner),
        connection=connection,
        stream=stream,
    ).update(lease_owner=owner, lease_until=now + dt.timedelta(seconds=seconds))
    state = StreamState.objects.get(connection=connection, stream=stream)
    if not claimed:
        remaining = (state.lease_until - now).total_seconds() if state.lease_until else 1
        raise StreamBusy(
            f"{connection.system.name}/{stream} is already syncing", retry_in=max(remaining, 1)
        )
    return state


def stream_lease_release(*, state: StreamState, owner: str) -> None:
    StreamState.objects.filter(pk=state.pk, lease_owner=owner).update(
        lease_owner="", lease_until=None
    )


def _lease_renew(*, state: StreamState, owner: str, **fields: str) -> None:
    """Extend our lease (storing ``fields`` with it); LeaseLost if another worker took the
    stream after our lease ran out."""
    updated = StreamState.objects.filter(pk=state.pk, lease_owner=owner).update(
        lease_until=timezone.now() + dt.timedelta(seconds=settings.CONCORD_STREAM_LEASE_SECONDS),
        **fields,
    )
    if not updated:
        raise LeaseLost(f"lost the lease on {state}; another worker continues")


def _cursor_save(*, state: StreamState, owner: str, cursor: str) -> None:
    _lease_renew(state=state, owner=owner, cursor=cursor)


# -- rate limit --------------------------------------------------------------------------


def rate_limit_acquire(
    *,
    system: SourceSystem,
    rate: float,
    burst: int,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = 120.0,
) -> float:
    """Take one token from the system's bucket, waiting as long as needed (up to max_wait).

    The bucket lives in the database, so every worker on every machine shares it. Returns
    the seconds waited.
    """
    if rate <= 0:
        return 0.0
    waited = 0.0
    while True:
        with transaction.atomic():
            now = timezone.now()
            bucket = RateBucket.objects.select_for_update().filter(system=system).first()
            if bucket is None:
                try:
                    with transaction.atomic():
                        RateBucket.objects.create(system=system, tokens=burst - 1, refreshed_at=now)
                    return waited
                except IntegrityError:
                    continue
            elapsed = max((now - bucket.refreshed_at).total_seconds(), 0.0)
            tokens = min(float(burst), bucket.tokens + elapsed * rate)
            if tokens >= 1:
                bucket.tokens, bucket.refreshed_at = tokens - 1, now
                bucket.save(update_fields=["tokens", "refreshed_at"])
                return waited
            bucket.tokens, bucket.refreshed_at = tokens, now
            bucket.save(update_fields=["tokens", "refreshed_at"])
            wait = (1 - tokens) / rate
        if waited + wait > max_wait:
            raise ConnectorError(
                f"rate limit of {system.name} leaves no capacity", retry_after=wait
            )
        sleep(wait)
        waited += wait


# -- the pull ----------------------------------------------------------------------------


def stream_sync(
    *,
    connection_id: int,
    stream: str,
    full: bool = False,
    attempt: int = 0,
    connector: Connector | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncRun:
    """Pull ``stream`` from its cursor (from the start with ``full``) through the pipeline.

    Each page is landed and processed in its own transactions before the cursor moves
    past it, so a killed worker redoes at most one page, and redoing it changes nothing.
    Raises ConnectorError (the task retries transient ones), StreamBusy, or
    ApplicationError for a stream that is not configured.
    """
    connection = Connection.objects.select_related("system").get(pk=connection_id)
    config = connection.streams.get(stream)
    if config is None:
        raise ApplicationError(
            f"{connection.system.name} has no stream {stream!r} "
            f"(configured: {', '.join(connection.streams) or 'none'})"
        )
    try:
        mapping = Mapping.from_dict(config.get("mapping"), entity=config.get("entity", ""))
    except MappingConfigError as exc:
        raise ApplicationError(f"{connection.system.name}/{stream}: {exc}") from None
    owner = uuid.uuid4().hex
    state = stream_lease_acquire(connection=connection, stream=stream, owner=owner)
    run = SyncRun.objects.create(
        system=connection.system,
        entity=mapping.entity,
        mode=SyncRun.Mode.FULL if full else SyncRun.Mode.PULL,
        stream=stream,
        source=stream,
        mapping=mapping.as_dict(),
        cursor_before=state.cursor,
        retries=attempt,
    )
    summary = RunSummary(run_id=run.pk)
    try:
        connector = connector or connection_connector(connection)
        pages = connector.pull(stream, None if full else (state.cursor or None))
        while True:
            rate_limit_acquire(
                system=connection.system,
                rate=connection.rate_limit_per_second,
                burst=connection.rate_limit_burst,
                sleep=sleep,
            )
            page = next(pages, None)
            if page is None:
                break
            if page.records:
                rows = [
                    RawRow(position=None, payload=mark_deleted(connector, stream, record))
                    for record in page.records
                ]
                page_summary = run_page(
                    system=connection.system,
                    run=run,
                    mapping=mapping,
                    rows=rows,
                    delete_policy=connection.delete_policy,
                )
                summary_merge(summary, page_summary, max_problems=20)
            if page.cursor is not None and page.cursor != state.cursor:
                _cursor_save(state=state, owner=owner, cursor=page.cursor)
                state.cursor = page.cursor
                SyncRun.objects.filter(pk=run.pk).update(cursor_after=page.cursor)
            else:
                # A page that leaves the cursor (an unsorted walk stores its high-water
                # mark only at its end) renews the lease too: a live worker keeps the
                # stream however long the pull takes.
                _lease_renew(state=state, owner=owner)
    except (ConnectorError, LeaseLost, crypto.CredentialsError) as exc:
        message = getattr(exc, "message", str(exc))
        kind = "permanent" if getattr(exc, "permanent", True) else "transient"
        run_finish(run=run, summary=summary, error=f"{kind}: {message}")
        raise
    except Exception as exc:
        run_finish(run=run, summary=summary, error=f"internal error: {exc!r}")
        raise
    finally:
        stream_lease_release(state=state, owner=owner)
    run = run_finish(run=run, summary=summary)
    if not run.cursor_after:
        SyncRun.objects.filter(pk=run.pk).update(cursor_after=state.cursor)
        run.cursor_after = state.cursor
    return run


def streams_due(*, now: dt.datetime | None = None) -> list[tuple[int, str]]:
    """(connection id, stream) pairs whose schedule says a pull is due."""
    now = now or timezone.now()
    due = []
    connections = list(
        Connection.objects.filter(enabled=True, schedule_minutes__gt=0).select_related("system")
    )
    last = {
        (system_id, stream): started
        for system_id, stream, started in SyncRun.objects.filter(
            mode__in=(SyncRun.Mode.PULL, SyncRun.Mode.FULL)
        )
        .order_by()
        .values("system_id", "stream")
        .annotate(last=Max("started_at"))
        .values_list("system_id", "stream", "last")
    }
    for connection in connections:
        for stream in connection.streams:
            started = last.get((connection.system_id, stream))
            if started is None or now - started >= dt.timedelta(
                minutes=connection.schedule_minutes
            ):
                due.append((connection.pk, stream))
    return due


def runs_abandoned_close(*, now: dt.datetime | None = None) -> int:
    """Mark runs whose worker died as failed: still "running", and nobody holds their
    stream's lease any more (a live sync renews it on every page)."""
    now = now or timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    held = set(StreamState.objects.exclude(free).values_list("connection__system_id", "stream"))
    cutoff = now - dt.timedelta(seconds=settings.CONCORD_STREAM_LEASE_SECONDS)
    abandoned = [
        pk
        for pk, system_id, stream in SyncRun.objects.filter(
            status=SyncRun.Status.RUNNING, started_at__lt=cutoff
        )
        .exclude(stream="")
        .values_list("pk", "system_id", "stream")
        if (system_id, stream) not in held
    ]
    return SyncRun.objects.filter(pk__in=abandoned, status=SyncRun.Status.RUNNING).update(
        status=SyncRun.Status.FAILED,
        finished_at=now,
        error="abandoned: the worker stopped before finishing (the retry resumes it)",
    )
