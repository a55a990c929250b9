"""The hub's truth: canonical models and the provenance vocabulary.

Models hold fields, constraints and properties over their own fields. Writes happen in
``customers.services``; reads with joins happen in ``customers.selectors``.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone


class Entity(models.TextChoices):
    """Canonical entity types; the pipeline, ExternalRef and provenance speak these names."""

    CUSTOMER = "customer"
    CONTACT = "contact"
    DEAL = "deal"
    ORDER = "order"
    INVOICE = "invoice"
    PAYMENT = "payment"
    TICKET = "ticket"


class SystemKind(models.TextChoices):
    CRM = "crm", "CRM"
    BILLING = "billing", "ERP / billing"
    HELPDESK = "helpdesk", "Help desk"
    MARKETING = "marketing", "Marketing"
    PRODUCT = "product", "Product"
    OTHER = "other", "Other"


# HIGH_VOLUME_SYSTEM_FK: the rows every inbound record writes (provenance, identity keys,
# cross-references, landing) point at their SourceSystem without a database constraint.
# A deferred constraint check costs one lookup per row at commit; on those tables it was
# about a third of PostgreSQL's time in a backfill (docs/benchmarks.md). Nothing is lost:
# a system is never deleted while it holds data (ExternalRef.system protects it, checked
# by Django), and these foreign keys keep their on_delete behaviour in Django.
class SourceSystem(models.Model):
    """A system the hub knows. Connector configuration and credentials live in integrations."""

    name = models.SlugField(max_length=64, unique=True)
    label = models.CharField(max_length=120, blank=True)
    kind = models.CharField(max_length=16, choices=SystemKind.choices, default=SystemKind.OTHER)
    # Higher is more trusted; used by the "most trusted source" conflict rule.
    trust_rank = models.PositiveSmallIntegerField(default=50)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.label or self.name


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Customer(TimestampedModel):
    """The golden record."""

    class Kind(models.TextChoices):
        PERSON = "person"
        ORGANIZATION = "organization"

    class Status(models.TextChoices):
        ACTIVE = "active"
        MERGED = "merged"
        ERASED = "erased"

    class Lifecycle(models.TextChoices):
        SUBSCRIBER = "subscriber"
        LEAD = "lead"
        OPPORTUNITY = "opportunity"
        CUSTOMER = "customer"
        CHURNED = "churned"
        OTHER = "other"

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.ORGANIZATION)
    name = models.CharField(max_length=255, db_index=True)
    first_name = models.CharField(max_length=120, blank=True)
    last_name = models.CharField(max_length=120, blank=True)
    legal_name = models.CharField(max_length=255, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    phone = models.CharField(max_length=32, blank=True, help_text="E.164")
    website = models.CharField(max_length=255, blank=True)
    tax_id = models.CharField(max_length=64, blank=True)
    national_id = models.CharField(max_length=64, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    address_line1 = models.CharField(max_length=255, blank=True)
    address_line2 = models.CharField(max_length=255, blank=True)
    city = models.CharField(max_length=120, blank=True)
    postal_code = models.CharField(max_length=32, blank=True)
    region = models.CharField(max_length=120, blank=True)
    country = models.CharField(max_length=2, blank=True, help_text="ISO 3166-1 alpha-2")
    shipping_address_line1 = models.CharField(max_length=255, blank=True)
    shipping_city = models.CharField(max_length=120, blank=True)
    shipping_postal_code = models.CharField(max_length=32, blank=True)
    shipping_country = models.CharField(max_length=2, blank=True)
    lifecycle_stage = models.CharField(max_length=16, choices=Lifecycle.choices, blank=True)
    owner = models.CharField(max_length=120, blank=True, help_text="Account owner in the CRM")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ACTIVE)
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_from"
    )

    class Meta:
        ordering = ["name", "id"]
        indexes = [
            models.Index(fields=["email"], name="customer_email_idx"),
            models.Index(fields=["phone"], name="customer_phone_idx"),
            models.Index(fields=["status", "name"], name="customer_status_name_idx"),
        ]
        permissions = [
            ("view_payment_status", "Can see invoice payment status"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("customers:detail", args=[self.pk])

    @property
    def display_address(self) -> str:
        parts = [self.address_line1, self.address_line2, f"{self.postal_code} {self.city}".strip()]
        parts += [self.region, self.country]
        return ", ".join(p for p in parts if p)


class IdentityKey(models.Model):
    """A normalized deterministic key (e-mail, phone, tax id …) that points at a customer.

    One customer has many keys (the CRM and the ERP may know different e-mails); the
    deterministic stage of identity resolution looks keys up in one query per batch.
    """

    class KeyType(models.TextChoices):
        EMAIL = "email"
        PHONE = "phone"
        TAX_ID = "tax_id"
        NATIONAL_ID = "national_id"
        DOMAIN = "domain"
        # Blocking keys of the probabilistic matcher: candidates, never links by themselves.
        BLOCK = "block"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="identity_keys")
    key_type = models.CharField(max_length=16, choices=KeyType.choices)
    value = models.CharField(max_length=255)
    customer_kind = models.CharField(max_length=16, choices=Customer.Kind.choices)
    # No database constraint or index on ``system`` (see HIGH_VOLUME_SYSTEM_FK).
    system = models.ForeignKey(
        SourceSystem, null=True, on_delete=models.SET_NULL, db_constraint=False, db_index=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            # Also the lookup index: (key_type, value) is its prefix.
            models.UniqueConstraint(
                fields=["key_type", "value", "customer"], name="identitykey_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.key_type}={self.value}"


class CustomerOwnedModel(TimestampedModel):
    """Rows that belong to one customer; soft-deleted when the source deletes them."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class Contact(CustomerOwnedModel):
    first_name = models.CharField(max_length=120, blank=True)
    last_name = models.CharField(max_length=120, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    phone = models.CharField(max_length=32, blank=True)
    title = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["last_name", "first_name", "id"]
        indexes = [models.Index(fields=["customer", "last_name"], name="contact_customer_idx")]

    def __str__(self) -> str:
        return self.full_name

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.email


class Deal(CustomerOwnedModel):
    class Stage(models.TextChoices):
        LEAD = "lead"
        QUALIFIED = "qualified"
        PROPOSAL = "proposal"
        NEGOTIATION = "negotiation"
        CLOSED_WON = "closed_won", "Closed won"
        CLOSED_LOST = "closed_lost", "Closed lost"

    name = models.CharField(max_length=255)
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.LEAD)
    amount = models.DecimalField(max_digits=14, decimal_places=2, null=True, blank=True)
    currency = models.CharField(max_length=3, blank=True)
    close_date = models.DateField(null=True, blank=True)
    owner = models.CharField(max_length=120, blank=True)

    class Meta:
        ordering = ["-close_date", "-id"]
        indexes = [models.Index(fields=["customer", "close_date"], name="deal_customer_idx")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_closed(self) -> bool:
        return self.stage in (self.Stage.CLOSED_WON, self.Stage.CLOSED_LOST)


class Order(CustomerOwnedModel):
    class Status(models.TextChoices):
        PENDING = "pending"
        CONFIRMED = "confirmed"
        SHIPPED = "shipped"
        DELIVERED = "delivered"
        CANCELLED = "cancelled"

    number = models.CharField(max_length=64)
    order_date = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    total = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    currency = models.CharField(max_length=3, blank=True)

    class Meta:
        ordering = ["-order_date", "-id"]
        indexes = [models.Index(fields=["customer", "order_date"], name="order_customer_idx")]

    def __str__(self) -> str:
        return self.number


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveIntegerField(default=0)
    sku = models.CharField(max_length=64, blank=True)
    description = models.CharField(max_length=255, blank=True)
    quantity = models.DecimalField(max_digits=12, decimal_places=2, default=Decimal("1"))
    unit_price = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))

    class Meta:
        ordering = ["order", "position"]

    def __str__(self) -> str:
        return f"{self.sku or self.description} x {self.quantity}"

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price


class PaymentStatus(models.TextChoices):
    PAID = "paid"
    PARTIALLY_PAID = "partially_paid", "Partially paid"
    OPEN = "open"
    OVERDUE = "overdue"
    VOID = "void"


class InvoiceQuerySet(models.QuerySet):
    def overdue(self, today: dt.date | None = None) -> InvoiceQuerySet:
        today = today or timezone.localdate()
        return self.filter(
            status=Invoice.Status.ISSUED, due_date__lt=today, amount_paid__lt=models.F("amount")
        )

    def unpaid(self) -> InvoiceQuerySet:
        return self.filter(status=Invoice.Status.ISSUED, amount_paid__lt=models.F("amount"))


class Invoice(CustomerOwnedModel):
    class Status(models.TextChoices):
        DRAFT = "draft"
        ISSUED = "issued"
        VOID = "void"

    number = models.CharField(max_length=64)
    issue_date = models.DateField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    amount = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    amount_paid = models.DecimalField(max_digits=14, decimal_places=2, default=Decimal("0"))
    currency = models.CharField(max_length=3, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.ISSUED)

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        ordering = ["-issue_date", "-id"]
        indexes = [
            models.Index(fields=["customer", "issue_date"], name="invoice_customer_idx"),
            models.Index(fields=["due_date"], name="invoice_due_idx", condition=Q(status="issued")),
        ]

    def __str__(self) -> str:
        return self.number

    @property
    def open_balance(self) -> Decimal:
        if self.status == self.Status.VOID:
            return Decimal("0")
        return max(self.amount - self.amount_paid, Decimal("0"))

    def payment_status_on(self, today: dt.date) -> str:
        if self.status == self.Status.VOID:
            return PaymentStatus.VOID
        if self.amount_paid >= self.amount:
            return PaymentStatus.PAID
        if self.due_date and self.due_date < today:
            return PaymentStatus.OVERDUE
        if self.amount_paid > 0:
            return PaymentStatus.PARTIALLY_PAID
        return PaymentStatus.OPEN

    @property
    def payment_status(self) -> str:
        return self.payment_status_on(timezone.localdate())

    @property
    def days_overdue(self) -> int:
        if self.payment_status != PaymentStatus.OVERDUE:
            return 0
        return (timezone.localdate() - self.due_date).days


class Payment(CustomerOwnedModel):
    class Status(models.TextChoices):
        SUCCEEDED = "succeeded"
        PENDING = "pending"
        FAILED = "failed"
        REFUNDED = "refunded"

    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.PROTECT, related_name="payments"
    )
    amount = models.DecimalField(max_digits=14, decimal_places=2)
    currency = models.CharField(max_length=3, blank=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    method = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.SUCCEEDED)

    class Meta:
        ordering = ["-paid_at", "-id"]
        indexes = [models.Index(fields=["customer", "paid_at"], name="payment_customer_idx")]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


class Ticket(CustomerOwnedModel):
    class Status(models.TextChoices):
        NEW = "new"
        OPEN = "open"
        PENDING = "pending"
        SOLVED = "solved"
        CLOSED = "closed"

    class Priority(models.TextChoices):
        LOW = "low"
        NORMAL = "normal"
        HIGH = "high"
        URGENT = "urgent"

    subject = models.CharField(max_length=255)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.NEW)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.NORMAL)
    channel = models.CharField(max_length=32, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        indexes = [models.Index(fields=["customer", "opened_at"], name="ticket_customer_idx")]

    def __str__(self) -> str:
        return self.subject

    @property
    def is_open(self) -> bool:
        return self.status in (self.Status.NEW, self.Status.OPEN, self.Status.PENDING)

    @property
    def resolution_time(self) -> dt.timedelta | None:
        if self.opened_at and self.resolved_at:
            return self.resolved_at - self.opened_at
        return None


class Consent(CustomerOwnedModel):
    class Status(models.TextChoices):
        GRANTED = "granted"
        WITHDRAWN = "withdrawn"

    purpose = models.CharField(max_length=64)
    status = models.CharField(max_length=16, choices=Status.choices)
    recorded_at = models.DateTimeField()
    system = models.ForeignKey(SourceSystem, null=True, on_delete=models.SET_NULL)

    class Meta:
        ordering = ["purpose", "-recorded_at"]

    def __str__(self) -> str:
        return f"{self.purpose}: {self.status}"


ENTITY_MODELS: dict[str, type[models.Model]] = {
    Entity.CUSTOMER: Customer,
    Entity.CONTACT: Contact,
    Entity.DEAL: Deal,
    Entity.ORDER: Order,
    Entity.INVOICE: Invoice,
    Entity.PAYMENT: Payment,
    Entity.TICKET: Ticket,
}


class ExternalRef(models.Model):
    """The cross-reference: (system, entity, external id) → canonical object.

    The only place that knows which source id is which customer. ``customer`` is the
    customer the object belongs to (the object itself for entity=customer).
    """

    # The unique constraint below starts with ``system``: it is the index of this key.
    system = models.ForeignKey(
        SourceSystem,
        on_delete=models.PROTECT,
        related_name="refs",
        db_constraint=False,
        db_index=False,
    )
    entity = models.CharField(max_length=16, choices=Entity.choices)
    external_id = models.CharField(max_length=255)
    object_id = models.BigIntegerField()
    # Indexed by externalref_customer_idx (customer, entity).
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="external_refs", db_index=False
    )
    payload_hash = models.CharField(max_length=64, blank=True)
    source_updated_at = models.DateTimeField(null=True, blank=True)
    tombstoned_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["system__name", "entity", "external_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["system", "entity", "external_id"], name="externalref_unique"
            )
        ]
        indexes = [
            models.Index(fields=["customer", "entity"], name="externalref_customer_idx"),
            models.Index(fields=["entity", "object_id"], name="externalref_object_idx"),
            models.Index(fields=["external_id"], name="externalref_extid_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.system_id}:{self.entity}:{self.external_id}"


class FieldProvenance(models.Model):
    """Where the current value of one canonical field came from."""

    entity = models.CharField(max_length=16, choices=Entity.choices)
    object_id = models.BigIntegerField()
    field = models.CharField(max_length=64)
    value = models.TextField(blank=True)
    system = models.ForeignKey(
        SourceSystem,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    source_updated_at = models.DateTimeField()
    # The landing row (integrations.InboundRecord) that carried the value; not a foreign
    # key because imports flow integrations → customers, never back.
    record_id = models.BigIntegerField(null=True, blank=True)
    applied_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["entity", "object_id", "field"], name="fieldprovenance_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.entity}:{self.object_id}.{self.field} from {self.system_id}"


class Direction(models.TextChoices):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    BOTH = "both"
    NONE = "none"


class ConflictRule(models.TextChoices):
    SYSTEM_WINS = "system_wins", "System of record wins"
    NEWEST_WINS = "newest_wins", "Newest wins (audited)"
    MOST_TRUSTED = "most_trusted", "Most trusted source"


class FieldOwnership(models.Model):
    """One cell of the field-ownership matrix.

    ``field`` is a canonical field name or ``*`` for every field of the entity without a row
    of its own. The system of record is a specific system or, failing that, a system kind,
    so the default matrix works for systems created later.
    """

    entity = models.CharField(max_length=16, choices=Entity.choices)
    field = models.CharField(max_length=64, default="*")
    owner_kind = models.CharField(max_length=16, choices=SystemKind.choices, blank=True)
    owner_system = models.ForeignKey(
        SourceSystem, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    direction = models.CharField(max_length=8, choices=Direction.choices, default=Direction.INBOUND)
    conflict_rule = models.CharField(
        max_length=16, choices=ConflictRule.choices, default=ConflictRule.SYSTEM_WINS
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["entity", "field"]
        constraints = [
            models.UniqueConstraint(fields=["entity", "field"], name="fieldownership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.entity}.{self.field}"

    def is_owner(self, system: SourceSystem) -> bool:
        if self.owner_system_id:
            return self.owner_system_id == system.pk
        return bool(self.owner_kind) and self.owner_kind == system.kind


def ordered_pair(a: int, b: int) -> tuple[int, int]:
    return (a, b) if a < b else (b, a)


class MatchCandidate(models.Model):
    """A pair the matcher thinks may be one customer, waiting for (or decided by) a steward.

    ``low_id < high_id`` always; ``evidence`` holds the per-field comparison: level,
    match weight, the two values, so the steward sees why.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        MERGED = "merged"
        REJECTED = "rejected", "Not the same"
        DEFERRED = "deferred"
        AUTO_LINKED = "auto_linked", "Auto-linked"
        SUPERSEDED = "superseded"

    low = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    high = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    probability = models.FloatField()
    match_weight = models.FloatField()
    evidence = models.JSONField(default=list)
    rule = models.CharField(max_length=64, blank=True, help_text="deterministic rule, if any")
    source = models.CharField(max_length=16, default="ingest", help_text="ingest or batch")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-probability", "id"]
        constraints = [
            models.UniqueConstraint(fields=["low", "high"], name="matchcandidate_unique_pair"),
            models.CheckConstraint(
                condition=Q(low__lt=models.F("high")), name="matchcandidate_ordered"
            ),
        ]
        indexes = [models.Index(fields=["status", "-probability"], name="matchcandidate_queue_idx")]

    def __str__(self) -> str:
        return f"{self.low_id}~{self.high_id} p={self.probability:.3f} ({self.status})"


class NotDuplicate(models.Model):
    """A steward's "not the same" decision; the pair is never suggested again."""

    low = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    high = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["low", "high"], name="notduplicate_unique_pair"),
            models.CheckConstraint(
                condition=Q(low__lt=models.F("high")), name="notduplicate_ordered"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.low_id} ≠ {self.high_id}"


class MergeRecord(models.Model):
    """One merge, with everything needed to undo it exactly."""

    survivor = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="merges")
    merged = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="+")
    candidate = models.ForeignKey(
        MatchCandidate, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Snapshot before the merge: both customers' fields, their provenance and identity
    # keys, and the ids of every row re-pointed from ``merged`` to ``survivor``.
    snapshot = models.JSONField()
    field_choices = models.JSONField(default=dict, blank=True)
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    merged_at = models.DateTimeField(auto_now_add=True)
    automatic = models.BooleanField(default=False)
    undone_at = models.DateTimeField(null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-merged_at", "-id"]

    def __str__(self) -> str:
        return f"{self.merged_id} → {self.survivor_id}"


class MatchSettings(models.Model):
    """Thresholds of the probabilistic matcher for one kind of customer, set by stewards."""

    kind = models.CharField(max_length=16, choices=Customer.Kind.choices, unique=True)
    upper = models.FloatField(default=0.99, help_text="auto-link at or above this probability")
    lower = models.FloatField(default=0.80, help_text="review queue at or above this probability")
    max_key_customers = models.PositiveIntegerField(
        default=25, help_text="a key shared by more customers stops linking (info@, switchboards)"
    )
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(lower__gte=0) & Q(lower__lte=models.F("upper")) & Q(upper__lte=1),
                name="matchsettings_thresholds_ordered",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}: review ≥ {self.lower}, auto-link ≥ {self.upper}"


class TrainedModel(models.Model):
    """Fellegi-Sunter parameters learned by EM (customers.identity.model.IdentityModel)."""

    params = models.JSONField()
    records = models.PositiveIntegerField(default=0)
    stats = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        get_latest_by = "created_at"

    def __str__(self) -> str:
        return f"model #{self.pk} ({self.records} records)"
