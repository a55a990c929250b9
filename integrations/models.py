"""The pipes: landing table and sync runs."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from customers.models import Entity, SourceSystem


class SyncRun(models.Model):
    """One pass of records from a source into the hub: a file import, a pull or a replay."""

    class Mode(models.TextChoices):
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

    system = models.ForeignKey(SourceSystem, on_delete=models.PROTECT, related_name="+")
    entity = models.CharField(max_length=16, choices=Entity.choices)
    external_id = models.CharField(max_length=255, blank=True)
    payload = models.JSONField()
    content_hash = models.CharField(max_length=64)
    run = models.ForeignKey(SyncRun, null=True, on_delete=models.SET_NULL, related_name="records")
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
            )
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
