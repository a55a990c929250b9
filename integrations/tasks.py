"""Celery tasks: thin adapters that take ids and call one service."""

from celery import shared_task

from . import services


@shared_task(acks_late=True)
def process_pending_records() -> dict[str, int]:
    """Pick up records landed by an importer that died before processing them."""
    return services.pending_records_process().as_dict()


@shared_task(acks_late=True)
def replay_records(record_ids: list[int]) -> dict[str, int]:
    return services.records_replay(record_ids=record_ids).as_dict()
