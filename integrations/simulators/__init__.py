"""Fake but realistic source systems served over real HTTP on loopback.

* ``crm``: HubSpot CRM v3 (companies, contacts, deals; OAuth or private-app token)
* ``erp``: Stripe billing (customers, invoices, charges, events) plus ERP orders
* ``helpdesk``: Zendesk Support v2 (tickets, users, organizations; incremental exports)

The demo and the tests run the real connectors against them. Standard library only and
no Django: a simulator is another company's system. See docs/simulators.md.

    from integrations.simulators import start_simulator
    sim = start_simulator("crm", port=0)   # sim.url, sim.world, sim.faults, sim.stats
    ...
    sim.stop()
"""

from .faults import Faults, Stats
from .server import DEFAULT_CREDENTIALS, Simulator, start_all, start_simulator
from .systems import SYSTEMS, canonical_system
from .webhooks import SIGNATURE_HEADER, sign, signature_header, verify_signature
from .world import Event, Record, World

__all__ = [
    "DEFAULT_CREDENTIALS",
    "SIGNATURE_HEADER",
    "SYSTEMS",
    "Event",
    "Faults",
    "Record",
    "Simulator",
    "Stats",
    "World",
    "canonical_system",
    "sign",
    "signature_header",
    "start_all",
    "start_simulator",
    "verify_signature",
]
