"""The pipes: landing table and sync runs."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from customers.models import Entity, SourceSystem


class SyncRun(models.Model):
    """One pass of records from a source into the hub: a file import, a pull or a replay."""

    class Mode(models.TextChoices):
        FULL = "full", "Full pull"
        FILE = "file"
        PULL = "pull"
        WEBHOOK = "webhook"
        REPLAY = "replay"

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial", "Succeeded with failures"
        FAILED = "failed"

    system = models.ForeignKey(SourceSystem, on_delete=models.PROTECT, related_name="runs")
    entity = models.CharField(max_length=16, choices=Entity.choices)
    mode = models.CharField(max_length=8, choices=Mode.choices)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.RUNNING)
    source = models.CharField(max_length=500, blank=True, help_text="File name or stream")
    stream = models.CharField(max_length=64, blank=True)
    retries = models.PositiveSmallIntegerField(default=0)
    mapping = models.JSONField(default=dict, blank=True)
    cursor_before = models.CharField(max_length=255, blank=True)
    cursor_after = models.CharField(max_length=255, blank=True)
    fetched = models.PositiveIntegerField(default=0)
    landed = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    stale = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    linked = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["system", "entity", "-started_at"], name="syncrun_idx")]

    def __str__(self) -> str:
        return f"{self.system_id}/{self.entity} {self.mode} #{self.pk}"

    @property
    def outcome_total(self) -> int:
        return self.created + self.updated + self.unchanged + self.stale + self.failed

    @property
    def duration(self):
        return self.finished_at - self.started_at if self.finished_at else None


class InboundRecord(models.Model):
    """The landing table: every record as received, committed before any processing."""

    class Status(models.TextChoices):
        PENDING = "pending"
        APPLIED = "applied"
        UNCHANGED = "unchanged"
        STALE = "stale"
        FAILED = "failed"

    # No database constraints on ``system`` and ``run`` (see HIGH_VOLUME_SYSTEM_FK in
    # customers.models); ``system`` is indexed by the unique constraints that start with it.
    system = models.ForeignKey(
        SourceSystem,
        on_delete=models.PROTECT,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    entity = models.CharField(max_length=16, choices=Entity.choices)
    external_id = models.CharField(max_length=255, blank=True)
    payload = models.JSONField()
    content_hash = models.CharField(max_length=64)
    run = models.ForeignKey(
        SyncRun,
        null=True,
        on_delete=models.SET_NULL,
        related_name="records",
        db_constraint=False,
    )
    stream = models.CharField(max_length=64, blank=True)
    position = models.PositiveIntegerField(
        null=True, blank=True, help_text="Row or line number in the file it came from"
    )
    source_updated_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    outcome = models.CharField(max_length=9, blank=True, help_text="created or updated")
    matched_by = models.CharField(max_length=16, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    event_id = models.CharField(
        max_length=255, blank=True, help_text="Webhook event id: redeliveries are dropped"
    )
    object_id = models.BigIntegerField(null=True, blank=True)
    customer_id = models.BigIntegerField(null=True, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # Redelivering identical content lands nothing new (idempotency).
            models.UniqueConstraint(
                fields=["system", "entity", "content_hash"], name="inboundrecord_unique_content"
            ),
            models.UniqueConstraint(
                fields=["system", "event_id"],
                name="inboundrecord_unique_event",
                condition=~Q(event_id=""),
            ),
        ]
        indexes = [
            models.Index(
                fields=["status", "received_at"],
                name="inbound_open_idx",
                condition=Q(status__in=["pending", "failed"]),
            ),
            models.Index(fields=["system", "entity", "external_id"], name="inbound_ext_idx"),
            models.Index(fields=["customer_id"], name="inbound_customer_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.system_id}:{self.entity}:{self.external_id or '?'} ({self.status})"


class Connection(models.Model):
    """How the hub reaches one source system: connector, configuration, secrets, limits."""

    class Connector(models.TextChoices):
        REST = "rest", "Declarative REST"
        FILE = "file", "File import only"

    class DeletePolicy(models.TextChoices):
        IGNORE = "ignore", "Ignore upstream deletes"
        SOFT_DELETE = "soft_delete", "Soft delete"
        TOMBSTONE = "tombstone", "Tombstone the reference only"

    system = models.OneToOneField(SourceSystem, on_delete=models.CASCADE, related_name="connection")
    connector = models.CharField(max_length=8, choices=Connector.choices, default=Connector.REST)
    preset = models.CharField(max_length=32, blank=True)
    config = models.JSONField(default=dict, blank=True)
    # Fernet tokens (integrations.crypto); never shown back in full.
    credentials_encrypted = models.TextField(blank=True)
    rate_limit_per_second = models.FloatField(default=10.0)
    rate_limit_burst = models.PositiveIntegerField(default=10)
    delete_policy = models.CharField(
        max_length=12, choices=DeletePolicy.choices, default=DeletePolicy.SOFT_DELETE
    )
    schedule_minutes = models.PositiveIntegerField(
        default=5, help_text="Incremental pull every N minutes (0: only on demand)"
    )
    enabled = models.BooleanField(default=True)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_check_result = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["system__name"]

    def __str__(self) -> str:
        return f"{self.system} ({self.get_connector_display()})"

    @property
    def streams(self) -> dict:
        return self.config.get("streams", {})


class StreamState(models.Model):
    """Cursor and run lease of one (connection, stream).

    The cursor advances only after the page it covers is landed. The lease makes sure one
    stream never syncs twice at once; it expires, so a killed worker blocks nobody for long.
    """

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="states")
    stream = models.CharField(max_length=64)
    cursor = models.CharField(max_length=255, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    newest_source_change = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["connection", "stream"], name="streamstate_unique")
        ]

    def __str__(self) -> str:
        return f"{self.connection_id}/{self.stream}"


class RateBucket(models.Model):
    """Token bucket per system, in the database so every worker on every machine shares it."""

    system = models.OneToOneField(SourceSystem, on_delete=models.CASCADE, related_name="+")
    tokens = models.FloatField()
    refreshed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.system_id}: {self.tokens:.1f} tokens"


class OutboxMessage(models.Model):
    """A change another system consumes, written in the transaction that made it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        DEAD = "dead", "Dead letter"
        SKIPPED = "skipped"

    target = models.ForeignKey(SourceSystem, on_delete=models.PROTECT, related_name="outbox")
    origin = models.ForeignKey(
        SourceSystem, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    entity = models.CharField(max_length=16, choices=Entity.choices)
    object_id = models.BigIntegerField()
    customer_id = models.BigIntegerField(null=True, blank=True)
    event = models.CharField(max_length=64)
    stream = models.CharField(max_length=64)
    operation = models.CharField(max_length=8)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    response = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["status", "next_attempt_at"],
                name="outbox_pending_idx",
                condition=Q(status="pending"),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} → {self.target_id} ({self.status})"
