from django.db import models

from panel.servers.models import Server


class MeterState(models.Model):
    """The raw counters last read from a server's domain, to turn the next reading into exact deltas."""

    server = models.OneToOneField(Server, on_delete=models.CASCADE, related_name="meter_state")
    domain_id = models.BigIntegerField(
        default=-1, help_text="libvirt's id of the running domain (new each boot)"
    )
    rx_bytes = models.BigIntegerField(default=0)
    tx_bytes = models.BigIntegerField(default=0)
    cpu_ns = models.BigIntegerField(default=0)
    rd_bytes = models.BigIntegerField(default=0)
    wr_bytes = models.BigIntegerField(default=0)
    read_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"counters of {self.server_id} at {self.read_at}"


class UsageSample(models.Model):
    """Usage of one server in one time bucket: 5 minutes, rolled up to an hour after 2 days and to a day
    after 90 days. Bytes and nanoseconds are exact 64-bit deltas."""

    FIVE_MINUTES, HOUR, DAY = 300, 3600, 86400

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="usage_samples")
    resolution = models.PositiveIntegerField()
    start = models.DateTimeField()
    rx_bytes = models.BigIntegerField(default=0)
    tx_bytes = models.BigIntegerField(default=0)
    cpu_ns = models.BigIntegerField(default=0)
    rd_bytes = models.BigIntegerField(default=0)
    wr_bytes = models.BigIntegerField(default=0)
    vcpus = models.PositiveIntegerField(default=1)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["server", "resolution", "start"], name="usage_sample_unique_bucket"
            )
        ]
        indexes = [models.Index(fields=["resolution", "start"])]

    def __str__(self) -> str:
        return f"{self.server_id} {self.resolution}s at {self.start}"


class TransferPeriod(models.Model):
    """A server's traffic in one period of its monthly anniversary, and what was done about it."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="transfer_periods")
    start = models.DateTimeField()
    end = models.DateTimeField()
    in_bytes = models.BigIntegerField(default=0)
    out_bytes = models.BigIntegerField(default=0)
    extra_bytes = models.BigIntegerField(default=0, help_text="traffic blocks staff added for this period")
    notified_percent = models.PositiveIntegerField(default=0)
    throttled = models.BooleanField(default=False)
    suspended = models.BooleanField(default=False)

    class Meta:
        ordering = ["-start"]
        constraints = [
            models.UniqueConstraint(fields=["server", "start"], name="transfer_period_unique_start")
        ]

    def __str__(self) -> str:
        return f"{self.server_id} {self.start:%Y-%m-%d}"
