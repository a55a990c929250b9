"""The one small interface every connector implements.

A connector talks to one source system. It knows nothing about the hub's models: it
yields pages of raw records and a cursor, pushes one change, and checks a webhook's
signature. The sync service lands what it yields and decides when a cursor may advance.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol


class ConnectorError(Exception):
    """A call to a source system failed.

    ``permanent`` errors (bad credentials, 404 on a configured path, a 4xx other than 408
    and 429, a malformed response) stop retrying and surface in the UI; transient ones
    (timeouts, 5xx, 429) are retried with backoff, honouring ``retry_after`` seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status


@dataclass
class Page:
    """Records of one page and the cursor that is safe to store once they are landed."""

    records: list[dict[str, Any]]
    cursor: str | None  # None: keep the previous cursor
    has_more: bool


@dataclass
class Change:
    """One outbound change for a system that consumes a field (from the outbox)."""

    stream: str  # the stream / object type in the target system
    operation: str  # "create" | "update" | "delete"
    external_id: str | None  # the target system's id for updates; None for creates
    data: dict[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""


@dataclass
class PushResult:
    external_id: str | None
    response: dict[str, Any] = field(default_factory=dict)


@dataclass
class WebhookRequest:
    """What a connector needs of an HTTP request to verify and read a webhook."""

    headers: dict[str, str]  # lower-case names
    body: bytes


class Connector(Protocol):
    def pull(self, stream: str, cursor: str | None) -> Iterator[Page]:
        """Pages of records changed since ``cursor`` (all records when None)."""
        ...

    def push(self, change: Change) -> PushResult: ...

    def verify_webhook(self, request: WebhookRequest) -> bool: ...

    def check(self) -> str:
        """Test the connection; return a short description or raise ConnectorError."""
        ...
