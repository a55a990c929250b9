"""python manage.py resolve_identities [--system NAME]"""

from django.core.management.base import BaseCommand, CommandError

from customers.errors import ApplicationError
from customers.services.resolve import identities_resolve


class Command(BaseCommand):
    help = (
        "Re-resolve the whole population with the probabilistic model: train it (EM), merge "
        "auto-link clusters (reversible), queue review pairs for the stewards."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--system", help="only merge clusters that contain a customer from this system"
        )

    def handle(self, *args, **opts):
        try:
            summary = identities_resolve(system=opts["system"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(
            f"Resolved {summary.customers} customers with model #{summary.model_id}: "
            f"{summary.merges} merges in {summary.clusters_merged} clusters "
            f"({summary.merges_refused} refused by merge protection), "
            f"{summary.review_pairs} pairs queued for review."
        )
