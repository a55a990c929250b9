"""Landing details the end-to-end import tests do not reach: concurrent landers."""

import pytest

from customers.models import Customer
from integrations.models import InboundRecord
from integrations.pipeline import land

from .conftest import counts

pytestmark = pytest.mark.django_db

T1 = "2026-01-01T10:00:00Z"


def test_content_landed_meanwhile_by_another_process_is_skipped_and_read_back(
    importer, monkeypatch
):
    acme = ["C1", "Acme", "info@acme.com", "", "US", "Customer", T1]
    globex = ["C2", "Globex", "k@globex.de", "", "DE", "Lead", T1]
    importer.crm_customers([acme])
    # The first read misses C1, as if another process landed it right after that read: the
    # insert hits the unique constraint and lands the rest of the page all the same.
    real, reads = land._known, []

    def read_before_the_other_process(system, entity, hashes):
        reads.append(len(hashes))
        return {} if len(reads) == 1 else real(system, entity, hashes)

    monkeypatch.setattr(land, "_known", read_before_the_other_process)
    out = counts(importer.crm_customers([acme, globex]))
    assert reads == [2, 1]  # the page, then the row the other process landed
    assert (out["landed"], out["created"], out["unchanged"]) == (1, 1, 1)
    assert InboundRecord.objects.count() == 2 and Customer.objects.count() == 2
    assert InboundRecord.objects.get(external_id="C1").attempts == 1  # not processed twice
