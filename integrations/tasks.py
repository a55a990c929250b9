"""Celery tasks: thin adapters that take ids and call one service."""

import logging

from celery import shared_task

from . import outbox, services, sync, webhook_drain
from .connectors.base import ConnectorError

logger = logging.getLogger(__name__)

MAX_SYNC_RETRIES = 8


@shared_task(acks_late=True)
def process_pending_records() -> dict[str, int]:
    """Pick up records landed by an importer that died before processing them."""
    return services.pending_records_process().as_dict()


@shared_task(acks_late=True)
def process_webhook_events(system_id: int) -> dict[str, int]:
    """Apply the system's pending webhook events in batches until none is left; enqueued
    (debounced) by the webhook view, see integrations.webhook_drain."""
    return webhook_drain.webhook_events_process(system_id=system_id).as_dict()


@shared_task(acks_late=True)
def replay_records(record_ids: list[int]) -> dict[str, int]:
    return services.records_replay(record_ids=record_ids).as_dict()


@shared_task(bind=True, acks_late=True, max_retries=MAX_SYNC_RETRIES)
def sync_stream(self, connection_id: int, stream: str, full: bool = False) -> dict | str:
    """Pull one stream. Transient errors retry with backoff and jitter, honouring
    Retry-After; permanent errors stop and show on the sync health page."""
    try:
        run = sync.stream_sync(
            connection_id=connection_id, stream=stream, full=full, attempt=self.request.retries
        )
    except sync.StreamBusy as exc:
        # A redelivered task (worker killed) waits for the dead worker's lease to expire.
        raise self.retry(exc=exc, countdown=exc.retry_in) from None
    except ConnectorError as exc:
        if exc.permanent:
            logger.error("sync %s/%s stopped: %s", connection_id, stream, exc.message)
            return "failed"
        raise self.retry(
            exc=exc,
            countdown=sync.backoff_seconds(self.request.retries, retry_after=exc.retry_after),
        ) from None
    return {"run": run.pk, "status": run.status}


@shared_task(acks_late=True)
def sync_due_streams() -> int:
    """Beat: enqueue an incremental pull for every stream whose schedule is due."""
    sync.runs_abandoned_close()
    due = sync.streams_due()
    for connection_id, stream in due:
        sync_stream.delay(connection_id, stream)
    return len(due)


@shared_task(acks_late=True)
def relay_outbox() -> dict[str, int]:
    """Push due outbox messages to the systems that consume them."""
    return outbox.outbox_relay()
