"""python manage.py demo_connect [--base-port 8101] [--sync [--if-empty]]

Connects the hub to the three simulators (HubSpot-like CRM, Stripe-like billing,
Zendesk-like help desk) with the presets, their demo credentials, webhook secrets and the
order-to-cash rules of the outbox. Idempotent. With ``--sync`` it also starts the
simulators in this process, pulls every stream through the connectors and the pipeline,
relays the outbox, and stops them: that is how ``make run`` seeds the demo.
"""

import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from customers.models import Customer
from integrations import sync
from integrations.connections import connection_upsert
from integrations.connectors.base import ConnectorError
from integrations.connectors.presets import PRESETS, preset_config
from integrations.outbox import outbox_relay
from integrations.simulators import DEFAULT_CREDENTIALS, start_all

# The simulators sign their webhooks with this secret (config/Procfile passes it).
WEBHOOK_SECRET = "whsec_concord_demo"
DEMO_CUSTOMERS = 400
DEMO_SEED = 7

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
        "target": "customer",
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
            "config": preset_config("hubspot", url.format(port=base_port))
            | {"consumes": CRM_CONSUMES},
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
        parser.add_argument(
            "--sync", action="store_true", help="start the simulators here and pull everything"
        )
        parser.add_argument(
            "--if-empty", action="store_true", help="with --sync: only if the hub has no customers"
        )
        parser.add_argument("--customers", type=int, default=DEMO_CUSTOMERS)
        parser.add_argument("--seed", type=int, default=DEMO_SEED)

    def handle(self, *args, **opts):
        connections = self.connect(opts)
        if not opts["sync"]:
            return
        if opts["if_empty"] and Customer.objects.exists():
            self.stdout.write("The hub already has customers: not syncing the demo again.")
            return
        started = time.monotonic()
        try:
            sims = start_all(
                host=opts["host"],
                base_port=opts["base_port"],
                customers=opts["customers"],
                seed=opts["seed"],
            )
        except OSError as exc:
            raise CommandError(
                f"cannot start the simulators on ports {opts['base_port']}-"
                f"{opts['base_port'] + 2}: {exc}"
            ) from None
        try:
            for connection in connections:
                for stream in connection.streams:
                    try:
                        run = sync.stream_sync(connection_id=connection.pk, stream=stream)
                    except ConnectorError as exc:
                        raise CommandError(f"{connection.system.name}/{stream}: {exc}") from None
                    self.stdout.write(
                        f"  {connection.system.name}/{stream}: {run.fetched} fetched, "
                        f"{run.created} created, {run.updated} updated, {run.failed} failed"
                    )
            relayed: dict[str, int] = {}
            while True:
                batch = outbox_relay(limit=500)
                relayed = {k: relayed.get(k, 0) + v for k, v in batch.items()}
                if sum(batch.values()) < 500:
                    break
        finally:
            for sim in sims.values():
                sim.stop()
        self.stdout.write(
            f"Synced the demo in {time.monotonic() - started:.1f} s; outbox: {relayed}."
        )

    def connect(self, opts):
        connections = []
        for spec in demo_systems(opts["host"], opts["base_port"]):
            preset = PRESETS[spec["preset"]]
            connection = connection_upsert(
                system_name=spec["system_name"],
                kind=preset.system_kind,
                preset=spec["preset"],
                config=spec["config"],
                credentials=spec["credentials"] | {"webhook_secret": WEBHOOK_SECRET},
                rate_limit_per_second=50.0,
                schedule_minutes=1,
            )
            connections.append(connection)
            self.stdout.write(
                f"{connection.system.name}: {preset.label} at {spec['config']['base_url']} "
                f"({', '.join(connection.streams)})"
            )
        return connections
