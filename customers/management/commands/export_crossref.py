"""python manage.py export_crossref [--out FILE]"""

import csv

from django.core.management.base import BaseCommand, CommandError

from customers.selectors import crossref_rows


class Command(BaseCommand):
    help = "CSV of every external reference and the canonical customer it resolves to now."

    def add_arguments(self, parser):
        parser.add_argument("--out", help="file to write (default: standard output)")

    def handle(self, *args, **opts):
        if not opts["out"]:
            self._write(self.stdout)
            return
        try:
            with open(opts["out"], "w", newline="", encoding="utf-8") as handle:
                count = self._write(handle)
        except OSError as exc:
            raise CommandError(f"cannot write {opts['out']}: {exc.strerror}") from None
        self.stderr.write(f"Wrote {count} references to {opts['out']}.")

    def _write(self, out) -> int:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["system", "entity", "external_id", "customer_id"])
        count = 0
        for row in crossref_rows():
            writer.writerow(row)
            count += 1
        return count
