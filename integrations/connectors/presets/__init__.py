"""Presets: configurations of the REST connector for well-known APIs.

A preset is a function of the base URL (and a few options) returning a complete config
dict: auth, streams with record paths, pagination, incremental cursors, the canonical
entity and mapping of each stream, push targets and, where the API signs them, webhooks.
The result is an ordinary configuration: store it on a Connection and edit it freely.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..rest import ConnectorConfigError
from . import hubspot, stripe, zendesk


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    system_kind: str  # customers.models.SystemKind value
    default_base_url: str
    credentials: tuple[str, ...]  # the credential names its auth reads
    rate_limit_per_second: float  # a safe default under the API's published limit
    build: Callable[..., dict[str, Any]]
    description: str = ""


PRESETS: dict[str, Preset] = {
    "hubspot": Preset(
        name="hubspot",
        label="HubSpot CRM",
        system_kind="crm",
        default_base_url="https://api.hubapi.com",
        credentials=("token",),
        rate_limit_per_second=9.0,  # private apps: 100 requests / 10 s
        build=hubspot.config,
        description="Companies, contacts and deals (CRM v3); incremental by last modified date.",
    ),
    "stripe": Preset(
        name="stripe",
        label="Stripe",
        system_kind="billing",
        default_base_url="https://api.stripe.com",
        credentials=("token", "webhook_secret"),
        rate_limit_per_second=20.0,  # live mode: 100 / s; test mode: 25 / s
        build=stripe.config,
        description="Customers, invoices, charges and customer events; signed webhooks.",
    ),
    "zendesk": Preset(
        name="zendesk",
        label="Zendesk Support",
        system_kind="helpdesk",
        default_base_url="https://example.zendesk.com",
        credentials=("email", "api_token"),
        rate_limit_per_second=6.0,  # Team plan: 400 requests / minute
        build=zendesk.config,
        description="Organizations, end users and tickets (incremental cursor export).",
    ),
}


def preset_config(name: str, base_url: str | None = None, **options: Any) -> dict[str, Any]:
    """The connector config of preset ``name`` against ``base_url`` (its public API when
    None, a simulator's address in the demo and tests)."""
    preset = PRESETS.get(name)
    if preset is None:
        raise ConnectorConfigError(
            [f"unknown preset {name!r} (known: {', '.join(sorted(PRESETS))})"]
        )
    return preset.build((base_url or preset.default_base_url).rstrip("/"), **options)
