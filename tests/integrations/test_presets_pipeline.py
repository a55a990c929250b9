"""The presets through the real pipeline, against the simulators over HTTP: id namespaces
of object types that share the customer entity, Stripe order lines, incremental deals."""

from decimal import Decimal

import pytest

from customers.models import Customer, Deal, ExternalRef, Order
from integrations import sync
from integrations.connections import connection_upsert
from integrations.connectors.presets import PRESETS, preset_config
from integrations.pipeline.mapping import Mapping, MappingConfigError, RecordError
from integrations.simulators import DEFAULT_CREDENTIALS, World, start_simulator

pytestmark = pytest.mark.django_db

CREDENTIALS = {
    "hubspot": {"token": DEFAULT_CREDENTIALS["crm"]["access_token"]},
    "stripe": {"token": DEFAULT_CREDENTIALS["erp"]["api_key"]},
    "zendesk": {
        "email": DEFAULT_CREDENTIALS["helpdesk"]["email"],
        "api_token": DEFAULT_CREDENTIALS["helpdesk"]["api_token"],
    },
}


@pytest.fixture
def connect():
    started = []

    def start(system: str, preset: str, **options):
        sim = start_simulator(system, **options)
        started.append(sim)
        connection = connection_upsert(
            system_name=system,
            kind=PRESETS[preset].system_kind,
            preset=preset,
            config=preset_config(preset, sim.url),
            credentials=CREDENTIALS[preset],
            rate_limit_per_second=1000.0,
        )
        return sim, connection

    yield start
    for sim in started:
        sim.stop()


def pull(connection, *streams):
    return [sync.stream_sync(connection_id=connection.pk, stream=s) for s in streams]


def customer_of(system: str, external_id: str) -> Customer:
    ref = ExternalRef.objects.get(system__name=system, entity="customer", external_id=external_id)
    return Customer.objects.get(pk=ref.customer_id)


def deal_of(external_id: str) -> Deal:
    ref = ExternalRef.objects.get(system__name="crm", entity="deal", external_id=external_id)
    return Deal.objects.get(pk=ref.object_id)


def test_a_company_and_a_contact_with_the_same_id_are_two_customers(connect):
    world = World.from_rows(
        {
            "companies": [
                {"id": "123", "name": "Acme Logistics", "domain": "acme-logistics.com"},
            ],
            "contacts": [
                # A person (no company) whose HubSpot id is the company's id.
                {"id": "123", "firstname": "Ann", "lastname": "Lee", "email": "ann@gmail.com"},
                {
                    "id": "124",
                    "firstname": "Bob",
                    "lastname": "Stone",
                    "email": "bob@acme-logistics.com",
                    "associatedcompanyid": "123",
                },
            ],
            "deals": [{"id": "123", "dealname": "Acme - Fleet", "associatedcompanyid": "123"}],
        },
        system="crm",
    )
    _, crm = connect("crm", "hubspot", world=world)
    runs = pull(crm, "companies", "persons", "contacts", "deals")
    assert [r.failed for r in runs] == [0, 0, 0, 0]

    company, person = customer_of("crm", "company:123"), customer_of("crm", "contact:123")
    assert company.pk != person.pk and Customer.objects.count() == 2
    assert (company.kind, company.name) == ("organization", "Acme Logistics")
    assert (person.first_name, person.email) == ("Ann", "ann@gmail.com")
    # The contact and the deal belong to the company, not to the person with its id.
    assert [c.email for c in company.contact_set.all()] == ["bob@acme-logistics.com"]
    assert list(Deal.objects.values_list("customer_id", flat=True)) == [company.pk]
    assert not person.contact_set.exists()


def test_zendesk_organization_and_user_ids_do_not_collide(connect):
    world = World.from_rows(
        {
            "organizations": [{"id": 77, "name": "Acme GmbH", "domain_names": ["acme.de"]}],
            "users": [
                {"id": 77, "name": "Ann Lee", "email": "ann@gmail.com", "role": "end-user"},
                {
                    "id": 78,
                    "name": "Bob Stone",
                    "email": "bob@acme.de",
                    "role": "end-user",
                    "organization_id": 77,
                },
            ],
            "tickets": [
                {"id": 1, "subject": "Invoice", "requester_id": 78, "organization_id": 77},
                {"id": 2, "subject": "Password", "requester_id": 77},
            ],
        },
        system="helpdesk",
    )
    _, helpdesk = connect("helpdesk", "zendesk", world=world)
    runs = pull(helpdesk, "organizations", "people", "users", "tickets")
    assert [r.failed for r in runs] == [0, 0, 0, 0]
    org, person = customer_of("helpdesk", "organization:77"), customer_of("helpdesk", "user:77")
    assert org.pk != person.pk and Customer.objects.count() == 2
    assert {t.subject: t.customer_id for t in org.ticket_set.all()} == {"Invoice": org.pk}
    assert {t.subject: t.customer_id for t in person.ticket_set.all()} == {"Password": person.pk}


def test_stripe_orders_land_with_their_lines(connect):
    sim, erp = connect("erp", "stripe", customers=20, seed=5)
    _, orders = pull(erp, "customers", "orders")
    assert orders.failed == 0 and orders.fetched == len(sim.world.records("orders")) > 0
    for source in sim.world.records("orders"):
        order = Order.objects.get(number=source.id)
        lines = list(order.lines.order_by("position"))
        items = source.data["line_items"]
        assert len(lines) == len(items) > 0
        for line, item in zip(lines, items, strict=True):
            assert (line.description, line.quantity) == (item["description"], item["quantity"])
            assert line.unit_price == Decimal(item["unit_amount"]) / 100
            assert line.sku.startswith("prod_")
        assert order.total == sum(line.amount for line in lines)


def test_hubspot_deals_sync_incrementally_with_their_companies(connect):
    sim, crm = connect("crm", "hubspot", customers=20, seed=5)
    _, first = pull(crm, "companies", "deals")
    deals = sim.world.records("deals")
    assert first.failed == 0 and first.fetched == len(deals) == Deal.objects.count()
    for source in deals:
        [company_id] = source.assoc["companies"]
        deal = deal_of(source.id)
        assert deal.customer_id == customer_of("crm", f"company:{company_id}").pk

    # Later: two deals change and one is created. Only those come back, and the deals of
    # the minute before the high-water mark (the look-back), landed as unchanged.
    latest = max(d.updated for d in deals)
    repeated = {d.id for d in deals if d.updated >= latest - 60_000}
    sim.world.advance(120)
    changed = [d.id for d in deals if d.id not in repeated][:2]
    sim.world.update("deals", changed[0], {"dealstage": "closedlost"})
    sim.world.update("deals", changed[1], {"amount": "4321"})
    company = sim.world.records("companies")[-1]
    new = sim.world.create(
        "deals",
        {"dealname": "Upsell", "dealstage": "qualifiedtobuy"},
        assoc={"companies": [company.id]},
    )
    sim.stats.reset()
    (second,) = pull(crm, "deals")
    assert (second.fetched, second.created, second.updated, second.unchanged) == (
        3 + len(repeated),
        1,
        2,
        len(repeated),
    )
    assert sim.stats.count("/crm/v3/objects/deals", method="GET") == 0  # no full listing
    assert sim.stats.count("/crm/v3/objects/deals/search", method="POST") == 1
    assert sim.stats.count("/crm/v4/associations/deals/companies/batch/read") == 1
    upsell = deal_of(new.id)
    assert upsell.customer_id == customer_of("crm", f"company:{company.id}").pk
    assert deal_of(changed[0]).stage == "closed_lost"
    assert deal_of(changed[1]).amount == Decimal("4321")


def test_id_prefixes_in_mappings_are_validated_and_leave_plain_mappings_as_they_were():
    plain = {
        "external_id": "id",
        "fields": {"name": "first_name"},
        "refs": {"customer": ["a", "b"]},
    }
    mapping = Mapping.from_dict(plain, entity="contact")
    assert mapping.as_dict() == plain  # same fingerprint: nothing is landed again
    assert mapping.map({"id": " 7 ", "name": "x", "b": 9}).refs == {"customer": "9"}

    prefixed = Mapping.from_dict(
        {
            "external_id": {"field": "id", "prefix": "contact:"},
            "fields": {"name": "first_name"},
            "refs": {"customer": [{"field": "a", "prefix": "company:"}, "b"]},
        },
        entity="contact",
    )
    assert prefixed.fingerprint != mapping.fingerprint
    record = prefixed.map({"id": 7, "name": "x", "a": 12, "b": 9})
    assert (record.external_id, record.refs) == ("contact:7", {"customer": "company:12"})
    assert prefixed.map({"id": 7, "name": "x", "a": " ", "b": 9}).refs == {"customer": "9"}
    assert prefixed.external_id_of({"id": ""}) == ""  # no id: no prefix alone
    with pytest.raises(RecordError, match="missing external id"):
        prefixed.map({"name": "x", "a": 1})

    for bad in (
        {"external_id": {"column": "id"}},
        {"external_id": {"field": "id", "prefix": 3}},
        {"external_id": "id", "refs": {"customer": {"field": "a", "suffix": "x"}}},
        {"external_id": "id", "refs": {"customer": []}},
    ):
        with pytest.raises(MappingConfigError):
            Mapping.from_dict({"fields": {"name": "first_name"}, **bad}, entity="contact")
