"""Reads for the operations pages: systems, sync health, dead letters.

Every function here runs a fixed number of queries whatever the number of systems,
streams, runs or records (aggregates and prefetches, never a query per row); the view
tests pin the counts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Q, QuerySet, Sum
from django.http import Http404
from django.utils import timezone

from customers.models import Customer, SourceSystem

from . import crypto
from .models import Connection, InboundRecord, OutboxMessage, StreamState, SyncRun

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser

VIEW_CONNECTION = "integrations.view_connection"
CHANGE_CONNECTION = "integrations.change_connection"
ADD_CONNECTION = "integrations.add_connection"
VIEW_SYNCRUN = "integrations.view_syncrun"
VIEW_RECORD = "integrations.view_inboundrecord"
CHANGE_RECORD = "integrations.change_inboundrecord"
VIEW_OUTBOX = "integrations.view_outboxmessage"
CHANGE_OUTBOX = "integrations.change_outboxmessage"

RECENT_RUNS = 50
# "Replay all matching" reads at most this many ids in one request.
MAX_MATCHING_IDS = 50_000


def require_perm(user: User, perm: str) -> None:
    if not user.has_perm(perm):
        raise PermissionDenied("Your role may not use this page.")


# -- access helpers (404 when missing, 403 when the role may not) ------------------------


def access_system(user: User, pk: int, perm: str = VIEW_CONNECTION) -> SourceSystem:
    """The source system ``pk`` with its connection (``system.connection`` may be missing).

    A user without ``view_connection`` gets 403 for every id, so ids reveal nothing;
    otherwise 404 when the system does not exist and 403 when ``perm`` is missing.
    """
    require_perm(user, VIEW_CONNECTION)
    system = SourceSystem.objects.select_related("connection").filter(pk=pk).first()
    if system is None:
        raise Http404("No such system")
    require_perm(user, perm)
    return system


def access_connection(user: User, system_pk: int, perm: str = VIEW_CONNECTION) -> Connection:
    """The connection of source system ``system_pk``; 404 when the system has none."""
    require_perm(user, VIEW_CONNECTION)
    connection = Connection.objects.select_related("system").filter(system_id=system_pk).first()
    if connection is None:
        raise Http404("No such connection")
    require_perm(user, perm)
    return connection


def access_record(user: User, pk: int, perm: str = VIEW_RECORD) -> InboundRecord:
    """The landing record ``pk`` with its system and run; same rules as access_system."""
    require_perm(user, VIEW_RECORD)
    record = InboundRecord.objects.select_related("system", "run").filter(pk=pk).first()
    if record is None:
        raise Http404("No such record")
    require_perm(user, perm)
    return record


# -- systems -----------------------------------------------------------------------------


@dataclass
class StreamRow:
    name: str
    entity: str
    state: StreamState | None

    @property
    def syncing(self) -> bool:
        return bool(
            self.state and self.state.lease_until and self.state.lease_until > timezone.now()
        )


@dataclass
class SystemRow:
    system: SourceSystem
    connection: Connection | None
    streams: list[StreamRow] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return self.connection.config.get("base_url", "") if self.connection else ""

    @property
    def check_ok(self) -> bool:
        result = self.connection.last_check_result if self.connection else ""
        return result.startswith("OK")


def _stream_rows(connection: Connection | None) -> list[StreamRow]:
    if connection is None:
        return []
    states = {s.stream: s for s in connection.states.all()}
    rows = [
        StreamRow(name, str(spec.get("entity", "")), states.pop(name, None))
        for name, spec in sorted(connection.streams.items())
    ]
    # Streams removed from the configuration keep their cursor: still worth seeing.
    rows += [StreamRow(name, "", state) for name, state in sorted(states.items())]
    return rows


def system_list() -> list[SystemRow]:
    """Every source system with its connection and stream cursors (2 queries)."""
    systems = SourceSystem.objects.select_related("connection").prefetch_related(
        "connection__states"
    )
    rows = []
    for system in systems:
        connection = getattr(system, "connection", None)
        rows.append(SystemRow(system, connection, _stream_rows(connection)))
    return rows


def system_row(*, system: SourceSystem) -> SystemRow:
    connection = getattr(system, "connection", None)
    return SystemRow(system, connection, _stream_rows(connection))


def preset_catalog() -> dict[str, Any]:
    """The connector presets by name, or {} while ``integrations.connectors.presets``
    is not installed (the create page then offers file-import-only systems)."""
    try:
        from .connectors.presets import PRESETS
    except ImportError:
        logger.warning("integrations.connectors.presets is missing: no presets offered")
        return {}
    return dict(PRESETS)


@dataclass
class Secrets:
    names: list[str]
    masked: dict[str, str]
    unreadable: bool = False


def connection_secrets(*, connection: Connection) -> Secrets:
    """Which secrets the connection holds or needs, masked for display (never in full)."""
    try:
        stored = crypto.decrypt(connection.credentials_encrypted)
    except crypto.CredentialsError:
        return Secrets(_credential_names(connection, {}), {}, unreadable=True)
    return Secrets(_credential_names(connection, stored), crypto.masked(stored))


def _credential_names(connection: Connection, stored: dict[str, Any]) -> list[str]:
    """The secrets a connection may hold: stored ones, the ones its auth reads, the
    ones its preset documents, and the webhook secret when it receives webhooks."""
    names = list(stored)
    try:
        from .connectors.rest import required_credentials
    except ImportError:
        required_credentials = None
    if connection.connector == Connection.Connector.REST and required_credentials:
        names += required_credentials(connection.config)
    preset = preset_catalog().get(connection.preset)
    if preset is not None:
        names += list(preset.credentials)
    if "webhook" in connection.config:
        names.append("webhook_secret")
    return list(dict.fromkeys(names))


# -- sync health -------------------------------------------------------------------------


@dataclass
class StreamHealth:
    system: SourceSystem
    entity: str
    stream: str  # "" for file imports and webhooks without a stream
    last_run: SyncRun | None = None
    newest_change: dt.datetime | None = None
    fetched_1h: int = 0
    fetched_24h: int = 0
    failed_24h: int = 0
    retries_24h: int = 0
    runs_24h: int = 0
    failed_runs_24h: int = 0
    dead: int = 0
    now: dt.datetime = field(default_factory=timezone.now)

    @property
    def lag(self) -> dt.timedelta | None:
        return self.now - self.newest_change if self.newest_change else None

    @property
    def per_minute(self) -> float:
        return self.fetched_1h / 60

    @property
    def error_rate(self) -> float | None:
        return self.failed_24h / self.fetched_24h if self.fetched_24h else None

    @property
    def error_percent(self) -> float | None:
        rate = self.error_rate
        return None if rate is None else rate * 100


@dataclass
class SystemHealth:
    system: SourceSystem
    connection: Connection | None
    streams: list[StreamHealth]
    dead_outbox: int = 0

    @property
    def dead(self) -> int:
        return self.dead_outbox + sum(s.dead for s in self.streams)


@dataclass
class SyncHealth:
    systems: list[SystemHealth]
    recent_runs: list[SyncRun]
    queue_depth: int | None
    now: dt.datetime

    @property
    def dead_records(self) -> int:
        return sum(s.dead - s.dead_outbox for s in self.systems)

    @property
    def dead_outbox(self) -> int:
        return sum(s.dead_outbox for s in self.systems)

    @property
    def runs_24h(self) -> int:
        return sum(row.runs_24h for s in self.systems for row in s.streams)

    @property
    def failed_runs_24h(self) -> int:
        return sum(row.failed_runs_24h for s in self.systems for row in s.streams)

    @property
    def failing_streams(self) -> int:
        return sum(
            1
            for s in self.systems
            for row in s.streams
            if row.last_run and row.last_run.status == SyncRun.Status.FAILED
        )


def dead_records() -> QuerySet[InboundRecord]:
    """Dead letters of the landing table: records that failed (to be read, mapped,
    resolved or applied) and wait for a fix and a replay."""
    return InboundRecord.objects.filter(status=InboundRecord.Status.FAILED)


def dead_outbox() -> QuerySet[OutboxMessage]:
    return OutboxMessage.objects.filter(status=OutboxMessage.Status.DEAD)


def sync_health(*, now: dt.datetime | None = None) -> SyncHealth:
    """Per system and stream: last run, lag, throughput, errors, retries, dead letters.

    Eight queries: systems with connections, stream states, the last run of each stream,
    the 24-hour run aggregates, the newest applied source change, dead records, dead
    outbox messages and the recent runs. Plus the broker's queue depth (no SQL).
    """
    now = now or timezone.now()
    day_ago, hour_ago = now - dt.timedelta(hours=24), now - dt.timedelta(hours=1)
    systems = list(SourceSystem.objects.select_related("connection"))
    rows: dict[tuple[int, str, str], StreamHealth] = {}
    by_system = {s.pk: s for s in systems}

    def row(system_id: int, entity: str, stream: str) -> StreamHealth:
        key = (system_id, entity, stream)
        if key not in rows:
            rows[key] = StreamHealth(by_system[system_id], entity, stream, now=now)
        return rows[key]

    for system in systems:
        connection = getattr(system, "connection", None)
        for name, spec in (connection.streams if connection else {}).items():
            row(system.pk, str(spec.get("entity", "")), name)

    last_ids = (
        SyncRun.objects.order_by()
        .values("system_id", "entity", "stream")
        .annotate(last=Max("pk"))
        .values("last")
    )
    for run in SyncRun.objects.filter(pk__in=last_ids).defer("mapping"):
        row(run.system_id, run.entity, run.stream).last_run = run

    totals = (
        SyncRun.objects.filter(started_at__gte=day_ago)
        .order_by()
        .values("system_id", "entity", "stream")
        .annotate(
            fetched_1h=Sum("fetched", filter=Q(started_at__gte=hour_ago)),
            fetched_24h=Sum("fetched"),
            failed_24h=Sum("failed"),
            retries_24h=Sum("retries"),
            runs_24h=Count("pk"),
            failed_runs_24h=Count("pk", filter=Q(status=SyncRun.Status.FAILED)),
        )
    )
    for t in totals:
        r = row(t["system_id"], t["entity"], t["stream"])
        r.fetched_1h, r.fetched_24h = t["fetched_1h"] or 0, t["fetched_24h"] or 0
        r.failed_24h, r.retries_24h = t["failed_24h"] or 0, t["retries_24h"] or 0
        r.runs_24h, r.failed_runs_24h = t["runs_24h"], t["failed_runs_24h"]

    newest_applied = {
        (n["system_id"], n["entity"]): n["newest"]
        for n in InboundRecord.objects.filter(status=InboundRecord.Status.APPLIED)
        .order_by()
        .values("system_id", "entity")
        .annotate(newest=Max("source_updated_at"))
    }
    newest_state = {
        (s["connection__system_id"], s["stream"]): s["newest_source_change"]
        for s in StreamState.objects.filter(newest_source_change__isnull=False).values(
            "connection__system_id", "stream", "newest_source_change"
        )
    }
    dead_counts = _count_by(dead_records(), "system_id", "entity", "stream")
    for (system_id, entity, stream), n in dead_counts.items():
        row(system_id, entity, stream).dead = n
    outbox_counts = _count_by(dead_outbox(), "target_id")

    for (system_id, entity, stream), r in rows.items():
        candidates = [
            newest_applied.get((system_id, entity)),
            newest_state.get((system_id, stream)),
        ]
        candidates = [c for c in candidates if c is not None]
        r.newest_change = max(candidates) if candidates else None

    grouped: dict[int, list[StreamHealth]] = defaultdict(list)
    for key in sorted(rows, key=lambda k: (k[1] == "" and k[2] == "", k[2] or "~", k[1])):
        grouped[key[0]].append(rows[key])
    report = [
        SystemHealth(
            system=s,
            connection=getattr(s, "connection", None),
            streams=grouped.get(s.pk, []),
            dead_outbox=outbox_counts.get((s.pk,), 0),
        )
        for s in systems
    ]
    recent = list(SyncRun.objects.select_related("system").defer("mapping")[:RECENT_RUNS])
    return SyncHealth(report, recent, broker_queue_depth(), now)


def _count_by(rows: QuerySet, *fields: str) -> dict[tuple, int]:
    return {
        tuple(r[f] for f in fields): r["n"]
        for r in rows.order_by().values(*fields).annotate(n=Count("pk"))
    }


def broker_queue_depth(queue: str = "celery") -> int | None:
    """Tasks waiting in the broker's default queue, or None when it cannot be told.

    The filesystem broker keeps one file per message in ``data_folder_in`` named
    ``<time>_<uuid>.<queue>.msg``; Redis keeps a list per queue and priority step.
    """
    url = str(settings.CELERY_BROKER_URL or "")
    try:
        if url.startswith("filesystem"):
            folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("data_folder_in")
            if not folder:
                return None
            suffix = f"{queue}.msg"
            return sum(1 for name in os.listdir(folder) if name.partition(".")[2] == suffix)
        if url.startswith(("redis://", "rediss://")):
            import redis

            client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
            # kombu's priority steps: "celery", then "celery\x06\x16<n>".
            keys = [queue] + [f"{queue}\x06\x16{step}" for step in (3, 6, 9)]
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.llen(key)
                return sum(pipe.execute())
    except (OSError, ImportError) as exc:
        logger.warning("queue depth of %s unknown: %s", url.split("@")[-1], exc)
    except Exception as exc:  # redis.RedisError and friends: the page must still render
        logger.warning("queue depth of %s unknown: %r", url.split("@")[-1], exc)
    return None


# -- dead letters ------------------------------------------------------------------------


def dead_record_list(
    *, system_id: int | None = None, entity: str = "", text: str = ""
) -> QuerySet[InboundRecord]:
    """Failed landing records, newest first, without their (possibly large) payloads."""
    records = dead_records().select_related("system").defer("payload", "detail")
    if system_id:
        records = records.filter(system_id=system_id)
    if entity:
        records = records.filter(entity=entity)
    if text:
        records = records.filter(error__icontains=text)
    return records.order_by("-pk")


def dead_record_ids(*, system_id: int | None = None, entity: str = "", text: str = "") -> list[int]:
    """Ids of the dead records matching a filter, oldest first, at most MAX_MATCHING_IDS."""
    records = dead_record_list(system_id=system_id, entity=entity, text=text)
    return list(records.order_by("pk").values_list("pk", flat=True)[:MAX_MATCHING_IDS])


def dead_outbox_list(
    *, system_id: int | None = None, entity: str = "", text: str = ""
) -> QuerySet[OutboxMessage]:
    """Dead outbox messages (given up on after retries), newest first."""
    messages = dead_outbox().select_related("target").defer("payload", "response")
    if system_id:
        messages = messages.filter(target_id=system_id)
    if entity:
        messages = messages.filter(entity=entity)
    if text:
        messages = messages.filter(last_error__icontains=text)
    return messages.order_by("-pk")


def system_choices() -> list[tuple[int, str]]:
    return [(s.pk, str(s)) for s in SourceSystem.objects.only("pk", "name", "label")]


@dataclass
class RecordDetail:
    record: InboundRecord
    payload_json: str
    detail_json: str
    customer: Customer | None


def record_detail(*, record: InboundRecord) -> RecordDetail:
    """The record's payload and detail pretty-printed, and the customer it resolved to."""
    customer = None
    if record.customer_id:
        customer = Customer.objects.filter(pk=record.customer_id).only("pk", "name").first()
    return RecordDetail(
        record=record,
        payload_json=json.dumps(record.payload, indent=2, ensure_ascii=False, default=str),
        detail_json=(
            json.dumps(record.detail, indent=2, ensure_ascii=False, default=str)
            if record.detail
            else ""
        ),
        customer=customer,
    )
