"""What django-auditlog records: the rows people change by hand.

The pipeline writes in bulk and is audited by the landing table and FieldProvenance
instead (auditlog only sees ``save()``)."""

from auditlog.registry import auditlog

from .models import Customer, FieldOwnership, MatchSettings, SourceSystem

auditlog.register(Customer)
auditlog.register(FieldOwnership)
auditlog.register(MatchSettings)
auditlog.register(SourceSystem)
