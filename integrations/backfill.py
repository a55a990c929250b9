"""A file import spread over worker processes: a backfill that uses every core.

The parent reads the file once and deals each row to one worker by its external id, so
all versions of one record go to the same worker, in file order (a later row of a record
is never applied before an earlier one). Each worker lands and processes its pages with
its own database connection, exactly as a one-process import does (``run_page``); the
identity lock (``customers.services.locks``) makes the customer-resolving part of each
page take turns, so two workers never both create the same new customer. Landing,
mapping and everything before that lock run side by side.

Counts go to the run with atomic increments from each worker; the parent merges the
page summaries it gets back, reports progress, and closes the run once all have finished.
"""

from __future__ import annotations

import multiprocessing
import queue
import traceback
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connections

from customers.errors import ApplicationError
from customers.models import SourceSystem
from integrations.connectors.files import RawRow, read_rows
from integrations.models import SyncRun

from .pipeline.mapping import Mapping

# Pages waiting per worker: enough to keep it busy, little enough to bound memory.
QUEUE_PAGES = 2
_DONE = None


class BackfillError(ApplicationError):
    """A worker process of a parallel import failed; the pages it applied stay applied."""


def worker_for(row: RawRow, mapping: Mapping, workers: int) -> int:
    """The worker a row goes to: by external id (rows without one, by position)."""
    key = "" if row.error else mapping.external_id_of(row.payload)
    if not key:
        return (row.position or 0) % workers
    return zlib.crc32(key.encode()) % workers


def pages_import_parallel(
    *,
    system: SourceSystem,
    run: SyncRun,
    mapping: Mapping,
    path: str | Path,
    page_size: int,
    workers: int,
    on_page: Callable[[Any], None],
) -> None:
    """Land and process every row of ``path`` in ``workers`` processes; ``on_page`` gets
    each page's summary (``RunSummary``) in the parent as it completes.

    Preconditions: PostgreSQL (SQLite has one writer); not inside a transaction (each page
    commits on its own, in another process); ``run`` is saved and committed.
    """
    context = multiprocessing.get_context("fork")
    # Children must not share the parent's connection: close it, each opens its own.
    connections.close_all()
    inboxes = [context.Queue(maxsize=QUEUE_PAGES) for _ in range(workers)]
    results = context.Queue()
    processes = [
        context.Process(
            target=_work,
            args=(n, system.pk, run.pk, mapping.as_dict(), mapping.entity, inboxes[n], results),
            name=f"concord-backfill-{n}",
            daemon=True,
        )
        for n in range(workers)
    ]
    for process in processes:
        process.start()
    failure: str | None = None
    pending = [0] * workers  # pages handed to each worker and not reported back
    buffers: list[list[RawRow]] = [[] for _ in range(workers)]
    watch = _Watch(processes, inboxes, results, pending, on_page)
    try:
        for row in read_rows(path):
            n = worker_for(row, mapping, workers)
            buffers[n].append(row)
            if len(buffers[n]) >= page_size:
                failure = watch.hand(n, buffers[n])
                buffers[n] = []
                if failure:
                    break
        for n in range(workers):
            if not failure and buffers[n]:
                failure = watch.hand(n, buffers[n])
        for n in range(workers):
            if not failure:
                failure = watch.hand(n, _DONE)
        while not failure and any(pending):
            failure = watch.collect(block=True)
    finally:
        if failure:
            for process in processes:
                process.terminate()
        for process in processes:
            process.join()
    if failure:
        raise BackfillError(f"a backfill worker failed: {failure}")
    crashed = [p.name for p in processes if p.exitcode]
    if crashed:
        raise BackfillError(f"backfill workers exited abnormally: {', '.join(crashed)}")


class _Watch:
    """The parent's side: hand pages to workers, collect their summaries, notice deaths."""

    def __init__(self, processes, inboxes, results, pending, on_page) -> None:
        self.processes, self.inboxes, self.results = processes, inboxes, results
        self.pending, self.on_page = pending, on_page

    def hand(self, n: int, page: list[RawRow] | None) -> str | None:
        """Give worker ``n`` a page (or the end), collecting while its inbox is full."""
        while True:
            try:
                self.inboxes[n].put(page, timeout=0.05)
                self.pending[n] += page is not _DONE
                return None
            except queue.Full:
                if failure := self.collect(block=False):
                    return failure

    def collect(self, *, block: bool) -> str | None:
        try:
            kind, n, payload = self.results.get(timeout=1 if block else 0.05)
        except queue.Empty:
            # A worker killed from outside reports nothing: notice it by its exit code.
            dead = [p.name for p in self.processes if p.exitcode not in (None, 0)]
            return f"{', '.join(dead)} exited abnormally" if dead else None
        if kind == "error":
            return payload
        self.pending[n] -= 1
        self.on_page(payload)
        return None


def _work(n, system_id, run_id, mapping_data, entity, inbox, results) -> None:
    """A worker process: land and process the pages it is given, in order."""
    from integrations.services import run_page

    try:
        connections.close_all()
        system = SourceSystem.objects.get(pk=system_id)
        run = SyncRun.objects.get(pk=run_id)
        mapping = Mapping.from_dict(mapping_data, entity=entity)
        while (page := inbox.get()) is not _DONE:
            results.put(("page", n, run_page(system=system, run=run, mapping=mapping, rows=page)))
    except BaseException:  # report anything to the parent, which stops the import
        results.put(("error", n, traceback.format_exc(limit=8)))
    finally:
        connections.close_all()
