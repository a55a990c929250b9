"""python manage.py replay_failed [--system NAME] [--entity E] [--id N ...]"""

from django.core.management.base import BaseCommand

from customers.models import Entity
from integrations.models import InboundRecord
from integrations.services import OUTCOMES, records_replay


class Command(BaseCommand):
    help = "Process failed landing records again with the mapping of their run."

    def add_arguments(self, parser):
        parser.add_argument("--system")
        parser.add_argument("--entity", choices=Entity.values)
        parser.add_argument("--id", type=int, action="append", dest="ids")

    def handle(self, *args, **opts):
        records = InboundRecord.objects.filter(status=InboundRecord.Status.FAILED)
        if opts["system"]:
            records = records.filter(system__name=opts["system"])
        if opts["entity"]:
            records = records.filter(entity=opts["entity"])
        if opts["ids"]:
            records = records.filter(pk__in=opts["ids"])
        summary = records_replay(record_ids=list(records.values_list("pk", flat=True)))
        self.stdout.write(
            f"Replayed {summary.read} records: "
            + ", ".join(f"{summary.counts[o]} {o}" for o in OUTCOMES)
        )
        for problem in summary.problems[:20]:
            self.stdout.write(f"  {problem}")
