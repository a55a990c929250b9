"""Connection services: create or change how the hub reaches a system, test it."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from customers.errors import ApplicationError
from customers.services.systems import system_get_or_create

from . import crypto
from .connectors.base import ConnectorError
from .models import Connection
from .pipeline.mapping import Mapping, MappingConfigError


def _validate_streams(config: dict[str, Any]) -> None:
    problems = []
    for name, stream in config.get("streams", {}).items():
        try:
            Mapping.from_dict(stream.get("mapping"), entity=stream.get("entity", ""))
        except MappingConfigError as exc:
            problems.append(f"stream {name}: {exc}")
    if problems:
        raise ApplicationError("; ".join(problems))


@transaction.atomic
def connection_upsert(
    *,
    system_name: str,
    config: dict[str, Any],
    credentials: dict[str, Any] | None = None,
    kind: str | None = None,
    preset: str = "",
    connector: str = Connection.Connector.REST,
    rate_limit_per_second: float | None = None,
    delete_policy: str | None = None,
    schedule_minutes: int | None = None,
    enabled: bool = True,
) -> Connection:
    """Create or update the connection of a system; credentials are stored encrypted.

    ``credentials=None`` keeps the stored ones. The configuration is validated by building
    the connector, so a bad configuration never gets saved.
    """
    from .connectors.registry import build_connector

    _validate_streams(config)
    system = system_get_or_create(name=system_name, kind=kind)
    connection = Connection.objects.filter(system=system).first() or Connection(system=system)
    secrets = (
        credentials if credentials is not None else crypto.decrypt(connection.credentials_encrypted)
    )
    try:
        build_connector(connector, config, secrets)
    except (ValueError, ConnectorError) as exc:
        raise ApplicationError(f"invalid connector configuration: {exc}") from None
    connection.connector = connector
    connection.preset = preset
    connection.config = config
    connection.credentials_encrypted = crypto.encrypt(secrets)
    connection.enabled = enabled
    if rate_limit_per_second is not None:
        connection.rate_limit_per_second = rate_limit_per_second
    if delete_policy is not None:
        connection.delete_policy = delete_policy
    if schedule_minutes is not None:
        connection.schedule_minutes = schedule_minutes
    connection.save()
    return connection


def connection_check(*, connection: Connection) -> tuple[bool, str]:
    """Test the connection with a cheap request; the result is stored for the UI."""
    from .sync import connection_connector

    try:
        ok, message = True, connection_connector(connection).check()
    except ConnectorError as exc:
        ok, message = False, exc.message
    except crypto.CredentialsError as exc:
        ok, message = False, str(exc)
    Connection.objects.filter(pk=connection.pk).update(
        last_checked_at=timezone.now(), last_check_result=message[:500]
    )
    return ok, message


def credentials_rotate() -> int:
    """Re-encrypt every stored credential with the first key of CONCORD_ENCRYPTION_KEYS."""
    count = 0
    for connection in Connection.objects.select_for_update().exclude(credentials_encrypted=""):
        connection.credentials_encrypted = crypto.rotate(connection.credentials_encrypted)
        connection.save(update_fields=["credentials_encrypted"])
        count += 1
    return count
