"""Reads: every non-trivial query of the hub, with the joins it needs."""

from __future__ import annotations

from collections.abc import Iterator

from customers.models import Customer, ExternalRef


def survivor_ids() -> dict[int, int]:
    """Merged customer id → the active customer it was merged into (chains followed)."""
    parent = dict(
        Customer.objects.filter(merged_into__isnull=False).values_list("pk", "merged_into_id")
    )
    resolved: dict[int, int] = {}
    for start in parent:
        node, seen = start, set()
        while node in parent and node not in seen:
            seen.add(node)
            node = parent[node]
        resolved[start] = node
    return resolved


def crossref_rows(chunk_size: int = 5000) -> Iterator[tuple[str, str, str, int]]:
    """(system, entity, external_id, customer_id now) for every ExternalRef."""
    survivors = survivor_ids()
    refs = ExternalRef.objects.order_by("system__name", "entity", "external_id").values_list(
        "system__name", "entity", "external_id", "customer_id"
    )
    for system, entity, external_id, customer_id in refs.iterator(chunk_size=chunk_size):
        yield system, entity, external_id, survivors.get(customer_id, customer_id)
