"""Real Celery worker processes on Redis for tests: start, kill, stop, read their log.

Used by test_worker_kill.py. The worker runs ``config.settings.local`` against the test
database (``DATABASE_URL``) and a Redis broker: the test settings run tasks eagerly on a
memory broker, which is exactly what these tests must not do.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

BASE_DIR = Path(__file__).resolve().parents[2]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def redis_url() -> str:
    """The broker CI configures (CELERY_BROKER_URL) when it is Redis, else local Redis."""
    url = os.environ.get("CELERY_BROKER_URL", "")
    return url if url.startswith(("redis://", "rediss://")) else DEFAULT_REDIS_URL


def database_url(db: dict[str, Any]) -> str:
    """A DATABASE_URL for django-environ naming the same database as ``db`` (a
    ``connection.settings_dict``): at test time that is the test database."""
    user = quote(db.get("USER") or "", safe="")
    password = quote(str(db.get("PASSWORD") or ""), safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or ""
    port = f":{db['PORT']}" if db.get("PORT") else ""
    options = {k: v for k, v in (db.get("OPTIONS") or {}).items() if isinstance(v, str | int)}
    query = f"?{urlencode(options)}" if options else ""
    return f"postgres://{auth}{host}{port}/{quote(db['NAME'], safe='')}{query}"


def wait_for(
    condition: Callable[[], Any], *, timeout: float, what: str, detail: Callable[[], str]
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``detail()`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{detail()}")
        time.sleep(0.1)


class Worker:
    """``celery -A config worker`` as a subprocess in its own process group."""

    def __init__(self, *, name: str, queue: str, env: dict[str, str], log: Path) -> None:
        self.name, self.queue, self.env, self.log = name, queue, env, log
        self.process: subprocess.Popen | None = None

    def start(self) -> Worker:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--pool=prefork",
            "--concurrency=1",
            "--loglevel=INFO",
            "-Q",
            self.queue,
            "-n",
            f"{self.name}@%h",
            # No chatter with other workers on a shared broker; startup stays fast.
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command,
                cwd=BASE_DIR,
                env={**os.environ, **self.env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the pool children die too
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the main process and its pool children: no shutdown code runs."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 15) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not exit in time."""
        if not self.alive():
            self.kill()  # reap any pool child left in the group
            return
        try:
            os.killpg(self.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return f"[{self.name}: no log]"
        return f"--- {self.name} log tail ({self.log}) ---\n" + "\n".join(
            text.splitlines()[-lines:]
        )


def unacked_for_queue(client: Any, queue: str) -> dict[str, float]:
    """Delivery tag → delivery time of the messages of ``queue`` that a worker took and has
    not acknowledged (kombu's Redis transport keeps them in ``unacked`` / ``unacked_index``
    until the ack, and restores them after the visibility timeout)."""
    found = {}
    for tag, raw in client.hscan_iter("unacked"):
        _message, _exchange, routing_key = json.loads(raw)
        if routing_key == queue:
            score = client.zscore("unacked_index", tag)
            found[tag.decode() if isinstance(tag, bytes) else tag] = score or 0.0
    return found


def queue_purge(client: Any, queue: str) -> None:
    """Drop the queue, its bindings and its unacknowledged messages (test isolation)."""
    for key in client.scan_iter(match=f"*{queue}*"):
        client.delete(key)
    for tag in unacked_for_queue(client, queue):
        client.hdel("unacked", tag)
        client.zrem("unacked_index", tag)
