"""App state kept in the ORM. Trajectories themselves live in LanceDB (see `trajectories.store`)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ImportJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued (waiting for an import worker)"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial", "imported with rejected records"
        FAILED = "failed"
        INTERRUPTED = "interrupted", "interrupted (its process stopped)"
        DISCARDED = "discarded"
        UNDONE = "undone", "undone (what it added was removed)"

    # A job in one of these can be run again: what it wrote is skipped as duplicates.
    RESUMABLE = (Status.FAILED, Status.INTERRUPTED)

    class Origin(models.TextChoices):
        CLI = "cli", "command line"
        WEB = "web", "upload"
        API = "api", "API upload"

    # Run by an import worker (`manage.py import_worker`), which resumes them when a run is cut short.
    QUEUED_ORIGINS = (Origin.WEB, Origin.API)

    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    origin = models.CharField(max_length=8, choices=Origin.choices, default=Origin.CLI)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    sources = models.JSONField(default=list, help_text="files (or <stdin>) as given")
    options = models.JSONField(default=dict)
    records = models.BigIntegerField(default=0)
    imported = models.BigIntegerField(default=0)
    updated = models.BigIntegerField(default=0)
    duplicates = models.BigIntegerField(default=0)
    rejected = models.BigIntegerField(default=0)
    warnings = models.BigIntegerField(default=0)
    bytes_read = models.BigIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    duration_seconds = models.FloatField(default=0.0)
    first_errors = models.JSONField(default=list, blank=True)
    # Where records were found inside documents, per file: {"results.json": {"simulations": "50 records"}}.
    findings = models.JSONField(default=dict, blank=True)
    error_report = models.CharField(max_length=1024, blank=True)
    failure = models.TextField(blank=True)
    # Which process runs the job, and when it last said so: a job whose process is gone is interrupted.
    owner_host = models.CharField(max_length=255, blank=True)
    owner_pid = models.IntegerField(null=True, blank=True)
    owner_started = models.FloatField(null=True, blank=True, help_text="the owner process's start time")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="runs so far (more than one: resumed)")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import #{self.pk} ({self.status})"

    @property
    def records_per_second(self) -> float:
        return self.records / self.duration_seconds if self.duration_seconds else 0.0

    @property
    def is_dry_run(self) -> bool:
        return bool(self.options.get("dry_run"))

    @property
    def file_names(self) -> list[str]:
        """The files as the user named them (an upload's original names, not where it was stored)."""
        shown = dict(tuple(pair) for pair in self.options.get("display_names", ()))
        return [shown.get(source, source) for source in self.sources]

    @property
    def outcome(self) -> str:
        """One wording for how a job went: nothing imported is never "succeeded"."""
        rejected = f"{self.rejected:,} rejected"
        if self.status == self.Status.RUNNING:
            return "running"
        if self.status in (
            self.Status.QUEUED,
            self.Status.FAILED,
            self.Status.INTERRUPTED,
            self.Status.DISCARDED,
            self.Status.UNDONE,
        ):
            return self.get_status_display()
        if self.is_dry_run:
            return f"dry run: {self.records - self.rejected:,} would import, {rejected}"
        stored = self.imported + self.updated
        if not stored:
            return f"nothing imported ({rejected})" if self.rejected else "nothing new (all already stored)"
        return f"imported with {rejected}" if self.rejected else "imported"

    @property
    def is_resumable(self) -> bool:
        return self.status in self.RESUMABLE


class ImportWorker(models.Model):
    """An import worker process and when it last said it was alive: what `/healthz` reports, and
    how any web server knows whether queued imports will run."""

    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField()
    job = models.ForeignKey(ImportJob, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-heartbeat_at"]
        constraints = [models.UniqueConstraint(fields=["host", "pid"], name="one_row_per_worker_process")]

    def __str__(self) -> str:
        return f"import worker {self.pid} on {self.host}"


class TrajectoryAccess(models.Model):
    """No table: carries the permissions for trajectories, which live in LanceDB, not the ORM."""

    class Meta:
        managed = False
        default_permissions = ()
        verbose_name = "trajectory"
        verbose_name_plural = "trajectories"
        permissions = [("delete_trajectory", "Can delete trajectories")]

    def __str__(self) -> str:
        return "trajectory access"


class Monitor(models.Model):
    """A saved, named question about trajectories (list parameters: filters, `q`, `regex`), asked of
    every import's new rows: the rows it matches are tagged `monitor:<name>`, which is also how its
    matches are listed and counted by iteration."""

    class Rule(models.TextChoices):
        NONE = "", "none"
        RUN_MAX_STEPS = "run_max_steps", "step count at its run's maximum"

    name = models.SlugField(max_length=60, unique=True, help_text="letters, digits, - and _")
    description = models.CharField(max_length=300, blank=True)
    query = models.TextField(help_text="list parameters, as in a list URL's query string")
    rule = models.CharField(max_length=32, choices=Rule.choices, blank=True, default=Rule.NONE)
    enabled = models.BooleanField(default=True)
    builtin = models.BooleanField(default=False, help_text="shipped with trajsite (switch it on to use it)")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_matched = models.BigIntegerField(default=0, help_text="rows the last evaluation tagged")

    class Meta:
        ordering = ["-enabled", "name"]

    def __str__(self) -> str:
        return f"monitor {self.name}"

    @property
    def tag(self) -> str:
        return f"monitor:{self.name}"
