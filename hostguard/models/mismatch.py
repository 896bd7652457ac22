"""The audit log's rows: one per (deployment, reason, host, port, scheme, time window) refused."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from hostguard.decision import Reason
from hostguard.hosts import format_authority
from hostguard.models.tenancy import tenant_model_label


class MismatchLog(models.Model):
    """One row per (deployment, reason, host, port, scheme, time window) hostguard refused.

    Written only by :mod:`hostguard.audit`, in the background: ``count`` is exact, the
    sample (method, path, remote address, user agent, SNI name) is the first request of
    the window.
    """

    #: The host of the row that counts hosts beyond ``HOSTGUARD_AUDIT_MAX_KEYS`` in a window.
    OVERFLOW_HOST = "(other hosts)"

    deployment = models.CharField(_("deployment"), max_length=64, blank=True)
    reason = models.CharField(_("reason"), max_length=32, choices=Reason.choices, db_index=True)
    host = models.CharField(
        _("host"),
        max_length=255,
        help_text=_("Normalised; for a malformed host, the raw value with control characters escaped."),
    )
    port = models.PositiveIntegerField(_("port"), null=True, blank=True)
    scheme = models.CharField(_("scheme"), max_length=5, blank=True)
    tenant = models.ForeignKey(
        tenant_model_label(),
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="mismatches",
        verbose_name=_("tenant"),
    )
    window_start = models.DateTimeField(_("window start"), db_index=True)
    first_seen = models.DateTimeField(_("first seen"))
    last_seen = models.DateTimeField(_("last seen"), db_index=True)
    count = models.PositiveBigIntegerField(_("count"), default=0)
    method = models.CharField(_("method"), max_length=16, blank=True)
    path = models.CharField(_("path"), max_length=500, blank=True)
    remote_addr = models.CharField(_("remote address"), max_length=64, blank=True)
    user_agent = models.CharField(_("user agent"), max_length=300, blank=True)
    sni = models.CharField(
        _("SNI name"),
        max_length=255,
        blank=True,
        help_text=_("The TLS server name the connection was opened for, when hostguard checked one."),
    )

    class Meta:
        ordering = ["-last_seen", "-pk"]
        verbose_name = _("host mismatch")
        verbose_name_plural = _("host mismatches")
        # An audit trail: rows are never added or changed by hand.
        default_permissions = ("view", "delete")
        # Two partial constraints because a NULL port (malformed hosts, overflow rows)
        # must collide too, on every backend.
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "reason", "host", "port", "scheme", "window_start"],
                condition=Q(port__isnull=False),
                name="hostguard_mismatchlog_unique_with_port",
            ),
            models.UniqueConstraint(
                fields=["deployment", "reason", "host", "scheme", "window_start"],
                condition=Q(port__isnull=True),
                name="hostguard_mismatchlog_unique_no_port",
            ),
        ]

    def __str__(self) -> str:
        return "%s %s ×%d" % (self.reason, self.authority, self.count)

    @property
    def authority(self) -> str:
        """``scheme://host:port`` as the client asked for it."""
        if self.reason == Reason.MALFORMED_HOST or self.host == self.OVERFLOW_HOST:
            return self.host
        return format_authority(self.scheme, self.host, self.port)
