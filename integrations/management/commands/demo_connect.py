"""python manage.py demo_connect [--host 127.0.0.1] [--base-port 8101]

Connects the hub to the three simulators (HubSpot-like CRM, Stripe-like billing,
Zendesk-like help desk) with the presets, their demo credentials, webhook secrets and the
order-to-cash rules of the outbox. Idempotent.
"""

from django.conf import settings
from django.core.management.base import BaseCommand

from integrations.connections import connection_upsert
from integrations.connectors.presets import PRESETS, preset_config
from integrations.simulators import DEFAULT_CREDENTIALS

WEBHOOK_SECRETS = {
    "crm": "whsec_concord_crm_demo",
    "erp": "whsec_concord_erp_demo",
    "helpdesk": "whsec_concord_helpdesk_demo",
}

# Order-to-cash: a deal won in the CRM becomes an order in billing; invoice payment
# status and open balance flow back to the CRM company.
ERP_CONSUMES = [
    {
        "entity": "deal",
        "fields": ["stage"],
        "when": {"stage": "closed_won"},
        "event": "deal.closed_won",
        "stream": "orders",
        "operation": "create",
        "data": {
            "customer": "$target_customer_id",
            "amount": "$values.amount",
            "currency": "$values.currency",
            "description": "$values.name",
        },
    }
]
CRM_CONSUMES = [
    {
        "entity": "invoice",
        "fields": ["amount_paid", "status", "due_date", "amount"],
        "event": "invoice.payment_status",
        "stream": "companies",
        "operation": "update",
        "target": "customer",
        "data": {
            "invoice_status": "$values.payment_status",
            "open_balance": "$values.open_balance",
        },
    }
]


def demo_systems(host: str, base_port: int) -> list[dict]:
    url = f"http://{host}:{{port}}"
    return [
        {
            "system_name": "crm",
            "preset": "hubspot",
            "config": preset_config("hubspot", url.format(port=base_port)) | {
                "consumes": CRM_CONSUMES
            },
            "credentials": {"token": DEFAULT_CREDENTIALS["crm"]["access_token"]},
        },
        {
            "system_name": "erp",
            "preset": "stripe",
            "config": preset_config(
                "stripe", url.format(port=base_port + 1), webhook_scheme="concord_v1"
            )
            | {"consumes": ERP_CONSUMES},
            "credentials": {"token": DEFAULT_CREDENTIALS["erp"]["api_key"]},
        },
        {
            "system_name": "helpdesk",
            "preset": "zendesk",
            "config": preset_config("zendesk", url.format(port=base_port + 2)),
            "credentials": {
                "email": DEFAULT_CREDENTIALS["helpdesk"]["email"],
                "api_token": DEFAULT_CREDENTIALS["helpdesk"]["api_token"],
            },
        },
    ]


class Command(BaseCommand):
    help = "Connect the hub to the demo simulators (presets, credentials, outbox rules)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--base-port", type=int, default=settings.CONCORD_SIMULATOR_PORT)

    def handle(self, *args, **opts):
        for spec in demo_systems(opts["host"], opts["base_port"]):
            preset = PRESETS[spec["preset"]]
            connection = connection_upsert(
                system_name=spec["system_name"],
                kind=preset.system_kind,
                preset=spec["preset"],
                config=spec["config"],
                credentials=spec["credentials"]
                | {"webhook_secret": WEBHOOK_SECRETS[spec["system_name"]]},
                rate_limit_per_second=50.0,
                schedule_minutes=1,
            )
            self.stdout.write(
                f"{connection.system.name}: {preset.label} at {spec['config']['base_url']} "
                f"({', '.join(connection.streams)})"
            )
