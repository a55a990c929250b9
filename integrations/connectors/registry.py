"""Build the connector a connection names. One place knows the kinds there are."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .base import Change, Connector, ConnectorError, Page, PushResult, WebhookRequest
from .rest import ConnectorConfigError, RestConnector

KINDS = ("rest", "file")


class FileOnlyConnector:
    """A system the hub only hears from through file imports (``import_records``)."""

    def __init__(self, config: dict[str, Any], credentials: dict[str, Any]) -> None:
        self.config = config

    def pull(self, stream: str, cursor: str | None) -> Iterator[Page]:
        raise ConnectorError(
            "this system is file import only: load files with manage.py import_records",
            permanent=True,
        )

    def push(self, change: Change) -> PushResult:
        raise ConnectorError(
            "this system is file import only: nothing can be pushed to it", permanent=True
        )

    def verify_webhook(self, request: WebhookRequest) -> bool:
        return False

    def check(self) -> str:
        return "OK: file import only (nothing to connect to)"


def build_connector(
    kind: str, config: dict[str, Any], credentials: dict[str, Any] | None
) -> Connector:
    """The connector for a connection; raises ConnectorConfigError (a ValueError and a
    permanent ConnectorError) listing everything wrong with the configuration."""
    if kind == "rest":
        return RestConnector(config or {}, credentials or {})
    if kind == "file":
        return FileOnlyConnector(config or {}, credentials or {})
    raise ConnectorConfigError([f"unknown connector kind {kind!r} (known: {', '.join(KINDS)})"])
