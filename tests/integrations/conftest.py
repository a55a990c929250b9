import csv
import io
import json
from pathlib import Path

import pytest
from django.core.management import call_command

CRM_CUSTOMER_MAPPING = {
    "external_id": "id",
    "updated_at": "updated",
    "fields": {
        "company": "name",
        "email": "email",
        "phone": "phone",
        "country": "country",
        "stage": "lifecycle_stage",
    },
    "values": {"lifecycle_stage": {"Customer": "customer", "Lead": "lead"}},
}
CRM_HEADER = ["id", "company", "email", "phone", "country", "stage", "updated"]


class Importer:
    """Writes files and mappings into a temp dir and runs the real import_records command."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.count = 0

    def write_csv(self, header: list[str], rows: list[list]) -> Path:
        self.count += 1
        path = self.tmp_path / f"data{self.count}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        return path

    def write_jsonl(self, rows: list[dict]) -> Path:
        self.count += 1
        path = self.tmp_path / f"data{self.count}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    def mapping(self, data: dict) -> Path:
        self.count += 1
        path = self.tmp_path / f"map{self.count}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    def run(self, system: str, entity: str, mapping: dict, path: Path, *extra: str) -> str:
        out = io.StringIO()
        call_command(
            "import_records",
            str(path),
            "--system",
            system,
            "--entity",
            entity,
            "--mapping",
            str(self.mapping(mapping)),
            *extra,
            stdout=out,
        )
        return out.getvalue()

    def crm_customers(self, rows: list[list], *extra: str) -> str:
        return self.run(
            "crm", "customer", CRM_CUSTOMER_MAPPING, self.write_csv(CRM_HEADER, rows), *extra
        )


def counts(output: str) -> dict[str, int]:
    """The summary counts printed by import_records."""
    found = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in (
            "read",
            "landed",
            "created",
            "updated",
            "unchanged",
            "stale",
            "failed",
        ):
            found[parts[0]] = int(parts[1])
    return found


@pytest.fixture
def importer(tmp_path, db) -> Importer:
    return Importer(tmp_path)
