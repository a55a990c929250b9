"""python manage.py seed_demo [--customers N] [--seed S] [--out DIR] [--if-empty]

Writes the demo world (the simulators' generated world, integrations/simulators/generate.py)
as CRM, ERP and help-desk exports to a directory, then loads them through the same pipeline
as import_records (``file_import``), in dependency order. See docs/demo.md.
"""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from customers.errors import ApplicationError
from customers.models import Customer
from integrations.connectors.files import FileReadError
from integrations.demo.export import DATASETS, build_world
from integrations.pipeline.mapping import Mapping, MappingConfigError
from integrations.services import OUTCOMES, file_import


class Command(BaseCommand):
    help = (
        "Export the simulators' demo world (CRM, ERP/billing and help-desk files with planted "
        "duplicates, conflicts and bad rows) and load it through the import pipeline."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--customers", type=int, default=2000, help="real customers to generate (default 2000)"
        )
        parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        parser.add_argument(
            "--out", default=None, help="directory for the generated files (default var/demo/)"
        )
        parser.add_argument(
            "--today",
            type=dt.date.fromisoformat,
            default=None,
            help="anchor date YYYY-MM-DD for all generated dates (default: today)",
        )
        parser.add_argument(
            "--if-empty", action="store_true", help="do nothing when the hub already has customers"
        )

    def handle(self, *args, **opts):
        if opts["if_empty"] and Customer.objects.exists():
            self.stdout.write("Customers already exist: demo seed skipped (--if-empty).")
            return
        if opts["customers"] < 20:
            raise CommandError("--customers must be at least 20")
        out = Path(opts["out"]) if opts["out"] else settings.VAR_DIR / "demo"
        today = opts["today"] or timezone.localdate()
        started = time.monotonic()
        world = build_world(customers=opts["customers"], seed=opts["seed"], today=today)
        world.write(out)
        generated = time.monotonic() - started
        self.stdout.write(
            f"Generated {opts['customers']} customers (seed {opts['seed']}, dates up to "
            f"{today.isoformat()}) into {out} in {generated:.1f} s."
        )
        totals: Counter = Counter()
        for dataset in DATASETS:
            dataset_started = time.monotonic()
            try:
                mapping = Mapping.load(dataset.mapping_path, entity=dataset.entity)
                summary = file_import(
                    system_name=dataset.system,
                    entity=dataset.entity,
                    mapping=mapping,
                    path=out / dataset.file,
                    system_kind=dataset.kind,
                )
            except (FileReadError, MappingConfigError, ApplicationError) as exc:
                raise CommandError(f"{dataset.label} ({dataset.file}): {exc}") from None
            counts = {"read": summary.read} | {o: summary.counts[o] for o in OUTCOMES}
            totals.update(counts)
            took = time.monotonic() - dataset_started
            self.stdout.write(
                f"{dataset.label:<18}{dataset.file:<25}{_counts(counts)}  ({took:.1f} s)"
            )
            if opts["verbosity"] > 1:
                for problem in summary.problems:
                    self.stdout.write(f"    {problem}")
        self.stdout.write(f"{'total':<43}{_counts(totals)}")
        self.stdout.write(
            f"Loaded in {time.monotonic() - started - generated:.1f} s. Failed rows are the "
            "planted bad records (dead letters); see docs/demo.md."
        )


def _counts(counts: dict[str, int]) -> str:
    return "  ".join(f"{name} {counts[name]:>5}" for name in ("read", *OUTCOMES))
