"""python manage.py import_records --system NAME --entity ENTITY --mapping MAP.json FILE"""

from django.core.management.base import BaseCommand, CommandError

from customers.errors import ApplicationError
from customers.models import Entity, SystemKind
from integrations.connectors.files import FileReadError
from integrations.pipeline.mapping import Mapping, MappingConfigError
from integrations.services import OUTCOMES, RunSummary, file_import


class Command(BaseCommand):
    help = (
        "Land every row of a CSV or JSON Lines file and run it through the pipeline "
        "(mapping, identity resolution, apply). Exits 0 unless the file cannot be read."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="CSV (.csv) or JSON Lines (.jsonl) file")
        parser.add_argument("--system", required=True, help="source system name, e.g. crm")
        parser.add_argument("--entity", required=True, choices=Entity.values)
        parser.add_argument("--mapping", required=True, help="mapping JSON (docs/mapping.md)")
        parser.add_argument(
            "--kind", choices=SystemKind.values, help="kind of a new system (default: guessed)"
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="preview what would be created, updated, linked or fail; write nothing",
        )
        parser.add_argument("--page-size", type=int, default=None)
        parser.add_argument(
            "--workers",
            type=int,
            default=1,
            help="processes to spread the pages over (PostgreSQL; e.g. the number of cores)",
        )

    def handle(self, *args, **opts):
        try:
            mapping = Mapping.load(opts["mapping"], entity=opts["entity"])
            summary = file_import(
                system_name=opts["system"],
                entity=opts["entity"],
                mapping=mapping,
                path=opts["file"],
                dry_run=opts["dry_run"],
                system_kind=opts["kind"],
                page_size=opts["page_size"],
                workers=opts["workers"],
            )
        except (FileReadError, MappingConfigError, ApplicationError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(format_summary(summary, opts))


def format_summary(summary: RunSummary, opts: dict) -> str:
    title = f"{opts['system']}/{opts['entity']} from {opts['file']}"
    if summary.dry_run:
        lines = [f"DRY RUN of {title}: nothing was written."]
    else:
        lines = [f"Imported {title} (run #{summary.run_id})."]
    lines.append(f"  {'read':<10}{summary.read:>9}")
    lines.append(f"  {'landed':<10}{summary.landed:>9}")
    for outcome in OUTCOMES:
        extra = ""
        if outcome == "updated" and summary.linked:
            extra = f"   ({summary.linked} linked to existing customers)"
        lines.append(f"  {outcome:<10}{summary.counts[outcome]:>9}{extra}")
    if summary.problems:
        lines.append(
            f"First errors ({min(len(summary.problems), 20)} of {summary.counts['failed']}):"
        )
        lines.extend(f"  {problem}" for problem in summary.problems[:20])
    return "\n".join(lines)
