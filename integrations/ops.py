"""Services behind the operations pages: connection settings, manual syncs, replays and
outbox retries. Views call these; they call the pipeline's own services."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial

from django.db import transaction
from django.utils import timezone

from customers.errors import ApplicationError

from . import crypto, services, tasks
from .connections import connection_upsert
from .connectors.base import ConnectorError
from .models import Connection, OutboxMessage

# Replays up to this many records in the request; the rest go to the worker in chunks of it.
REPLAY_CHUNK = 500


@dataclass
class ConnectionSettings:
    enabled: bool
    rate_limit_per_second: float
    rate_limit_burst: int
    delete_policy: str
    schedule_minutes: int
    base_url: str | None = None  # None: leave the configuration's base URL alone


def _stored_credentials(connection: Connection) -> dict:
    try:
        return crypto.decrypt(connection.credentials_encrypted)
    except crypto.CredentialsError:
        return {}


@transaction.atomic
def connection_settings_update(
    *, connection: Connection, values: ConnectionSettings, new_credentials: dict[str, str]
) -> Connection:
    """Change a connection's settings through ``connection_upsert`` (which validates the
    whole configuration). ``new_credentials`` replaces only the secrets it names."""
    config = dict(connection.config)
    if values.base_url is not None:
        config["base_url"] = values.base_url
    credentials = None
    if new_credentials:
        credentials = {**_stored_credentials(connection), **new_credentials}
    try:
        updated = connection_upsert(
            system_name=connection.system.name,
            config=config,
            credentials=credentials,
            preset=connection.preset,
            connector=connection.connector,
            rate_limit_per_second=values.rate_limit_per_second,
            delete_policy=values.delete_policy,
            schedule_minutes=values.schedule_minutes,
            enabled=values.enabled,
        )
    except crypto.CredentialsError as exc:
        raise ApplicationError(f"{exc}; enter every credential again to replace them") from None
    # connection_upsert has no burst parameter yet.
    updated.rate_limit_burst = values.rate_limit_burst
    updated.save(update_fields=["rate_limit_burst", "updated_at"])
    return updated


@transaction.atomic
def connection_create(
    *,
    system_name: str,
    kind: str | None,
    preset: str,
    base_url: str,
    credentials: dict[str, str],
    enabled: bool = True,
) -> Connection:
    """Connect a new (or so far file-only) system: with a preset, its REST configuration
    against ``base_url``; without one, a file-import-only connection."""
    if Connection.objects.filter(system__name=system_name).exists():
        raise ApplicationError(f"{system_name} already has a connection: edit it instead")
    if not preset:
        return connection_upsert(
            system_name=system_name,
            kind=kind,
            config={},
            credentials=credentials,
            connector=Connection.Connector.FILE,
            enabled=enabled,
        )
    from .connectors.presets import PRESETS, preset_config

    if preset not in PRESETS:
        raise ApplicationError(f"unknown preset {preset!r}")
    spec = PRESETS[preset]
    try:
        config = preset_config(preset, base_url or None)
    except (ConnectorError, ValueError) as exc:
        raise ApplicationError(str(getattr(exc, "message", exc))) from None
    return connection_upsert(
        system_name=system_name,
        kind=kind or spec.system_kind,
        config=config,
        credentials=credentials,
        preset=preset,
        connector=Connection.Connector.REST,
        rate_limit_per_second=spec.rate_limit_per_second,
        enabled=enabled,
    )


def connection_sync_enqueue(
    *, connection: Connection, streams: Sequence[str] | None = None, full: bool = False
) -> list[str]:
    """Queue a pull of ``streams`` (default: all of them) once the transaction commits.

    Returns the streams queued. Raises ApplicationError for a paused connection, one
    with no streams, or a stream it does not have.
    """
    if not connection.enabled:
        raise ApplicationError(f"{connection.system} is paused: enable it before syncing")
    configured = list(connection.streams)
    if not configured:
        raise ApplicationError(f"{connection.system} has no streams to pull (file import only)")
    wanted = list(streams) if streams else configured
    unknown = [s for s in wanted if s not in configured]
    if unknown:
        raise ApplicationError(f"{connection.system} has no stream {', '.join(unknown)}")
    for stream in wanted:
        if full:
            job = partial(tasks.sync_stream.delay, connection.pk, stream, full=True)
        else:
            job = partial(tasks.sync_stream.delay, connection.pk, stream)
        transaction.on_commit(job)
    return wanted


@dataclass
class ReplayResult:
    summary: services.RunSummary
    queued: int = 0
    batches: int = 0


def records_replay_request(*, record_ids: Iterable[int]) -> ReplayResult:
    """Replay up to REPLAY_CHUNK records now; queue the rest for the worker in chunks.

    Safe to repeat: records_replay claims rows with SKIP LOCKED and only touches failed or
    pending ones, so a record replayed meanwhile is left alone.
    """
    ids = list(dict.fromkeys(int(pk) for pk in record_ids))
    now, later = ids[:REPLAY_CHUNK], ids[REPLAY_CHUNK:]
    summary = services.records_replay(record_ids=now)
    chunks = [later[i : i + REPLAY_CHUNK] for i in range(0, len(later), REPLAY_CHUNK)]
    for chunk in chunks:
        transaction.on_commit(partial(tasks.replay_records.delay, chunk))
    return ReplayResult(summary=summary, queued=len(later), batches=len(chunks))


def outbox_messages_retry(*, message_ids: Iterable[int]) -> int:
    """Send dead outbox messages again: back to pending and due now. Attempts are kept, so
    a message that had used up its retries gets one more try. Returns how many."""
    return OutboxMessage.objects.filter(
        pk__in=list(message_ids), status=OutboxMessage.Status.DEAD
    ).update(status=OutboxMessage.Status.PENDING, next_attempt_at=timezone.now())
