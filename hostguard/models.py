"""Deployments, tenants and the authorities they claim; the policy version stamp.

Every write through the ORM — ``save()``, ``delete()``, and the queryset's
``update()``, ``bulk_create()``, ``bulk_update()`` and ``delete()`` — tells the policy,
so every process learns of it within ``HOSTGUARD_REFRESH_SECONDS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from hostguard.audit import OVERFLOW_HOST
from hostguard.decision import Reason
from hostguard.hosts import InvalidHost, format_authority, normalise_host, to_unicode

if TYPE_CHECKING:
    from hostguard.claims import SharedNames


def _policy_changed(using: str) -> None:
    from hostguard.policy import changed

    changed(using)


class PolicyQuerySet(models.QuerySet[Any]):
    """A queryset whose bulk writes, which send no model signals, still reach the policy."""

    def update(self, **kwargs: Any) -> int:
        count = super().update(**kwargs)
        if count:
            _policy_changed(self.db)
        return count

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Any]:
        created = super().bulk_create(objs, *args, **kwargs)
        if created:
            _policy_changed(self.db)
        return created

    def bulk_update(self, objs: Any, *args: Any, **kwargs: Any) -> int:
        from hostguard.policy import policy

        # Django's bulk_update calls update() once per batch: bump the stamp once.
        with policy.batch():
            return super().bulk_update(objs, *args, **kwargs)


class Deployment(models.Model):
    name = models.SlugField(
        _("name"),
        max_length=64,
        unique=True,
        help_text=_("The serving fleet, e.g. eu-1. Each process serves the one named by HOSTGUARD_DEPLOYMENT."),
    )
    description = models.TextField(_("description"), blank=True)

    objects = PolicyQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("deployment")
        verbose_name_plural = _("deployments")

    def __str__(self) -> str:
        return self.name


class Tenant(models.Model):
    name = models.CharField(_("name"), max_length=200, help_text=_("The customer's name, as staff know it."))
    slug = models.SlugField(
        _("slug"),
        max_length=64,
        unique=True,
        help_text=_("A short unique identifier: letters, digits, hyphens and underscores."),
    )
    deployment = models.ForeignKey(
        Deployment,
        on_delete=models.PROTECT,
        related_name="tenants",
        verbose_name=_("deployment"),
        help_text=_("The deployment that serves this tenant. Changing it moves the tenant."),
    )
    is_active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_("A suspended tenant's hosts are answered 421 Misdirected Request."),
    )

    objects = PolicyQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")

    def __str__(self) -> str:
        return self.name


class Authority(models.Model):
    SCHEME_CHOICES = [("", _("any")), ("http", "http"), ("https", "https")]

    host = models.CharField(
        _("host"),
        max_length=255,
        help_text=_(
            "A host name (Unicode is fine), *.example.com for every name under example.com, "
            "an IPv4 address or an IPv6 address. Stored lower-case, in punycode."
        ),
    )
    port = models.PositiveIntegerField(
        _("port"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(65535)],
        help_text=_("1–65535. Leave blank to accept any port."),
    )
    scheme = models.CharField(
        _("scheme"),
        max_length=5,
        blank=True,
        default="",
        choices=SCHEME_CHOICES,
        help_text=_("Leave as “any” to accept both http and https."),
    )
    tenant = models.ForeignKey(
        Tenant,
        on_delete=models.CASCADE,
        related_name="authorities",
        verbose_name=_("tenant"),
    )
    is_active = models.BooleanField(
        _("active"),
        default=True,
        help_text=_("An inactive authority is answered 421 Misdirected Request."),
    )
    note = models.CharField(_("note"), max_length=255, blank=True, help_text=_("Anything staff should know."))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)

    objects = PolicyQuerySet.as_manager()

    class Meta:
        ordering = ["host", "port", "scheme"]
        verbose_name = _("authority")
        verbose_name_plural = _("authorities")
        # The unique constraints are partial, so a lookup by host alone (the claims that
        # can match a host, those sharing its names) could use neither of them.
        indexes = [models.Index(fields=["host"], name="hostguard_authority_host")]
        # Two partial indexes instead of one: NULL ports must collide too, on every
        # backend, and NULLS NOT DISTINCT is PostgreSQL-only.
        constraints = [
            models.UniqueConstraint(
                fields=["host", "port", "scheme"],
                condition=Q(port__isnull=False),
                name="hostguard_authority_unique_with_port",
                violation_error_message=_("Another authority already claims this host, port and scheme."),
            ),
            models.UniqueConstraint(
                fields=["host", "scheme"],
                condition=Q(port__isnull=True),
                name="hostguard_authority_unique_any_port",
                violation_error_message=_("Another authority already claims this host and scheme on any port."),
            ),
        ]

    def __str__(self) -> str:
        return format_authority(self.scheme, self.host, self.port)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.normalise()
        super().save(*args, **kwargs)

    @property
    def unicode_host(self) -> str:
        return to_unicode(self.host)

    @property
    def unicode_authority(self) -> str:
        """The authority as staff would type it, with the host in Unicode."""
        return format_authority(self.scheme, to_unicode(self.host), self.port)

    def normalise(self) -> None:
        try:
            self.host = normalise_host(self.host or "")
        except InvalidHost as exc:
            raise ValidationError({"host": exc.message}, code="invalid") from None
        self.scheme = (self.scheme or "").lower()

    def clean_fields(self, exclude: Any = None) -> None:
        # Field validation checks scheme choices, so fold "HTTP" before it runs.
        self.scheme = (self.scheme or "").lower()
        super().clean_fields(exclude=exclude)

    def clean(self) -> None:
        self.normalise()

    def validate_constraints(self, exclude: Any = None) -> None:
        clash = self.conflicting_claim()
        if clash is not None and not (exclude and "host" in exclude):
            raise ValidationError(
                {
                    "host": _("%(authority)s is already claimed by the tenant “%(tenant)s”.")
                    % {"authority": str(self), "tenant": clash.tenant.name}
                },
                code="unique",
            )
        super().validate_constraints(exclude=exclude)

    def shared_names(self) -> SharedNames | None:
        """Other tenants' claims this one would share host names with (see :mod:`hostguard.claims`)."""
        from hostguard.claims import shared_names

        if not self.host:
            return None
        exclude = [self.pk] if self.pk is not None else []
        return shared_names([self.host], self.tenant_id, exclude=exclude, using=self._state.db).get(self.host)

    def conflicting_claim(self) -> Authority | None:
        """Another authority claiming the same (host, port, scheme), if any."""
        if not self.host:
            return None
        claims = Authority.objects.select_related("tenant").filter(
            host=self.host, scheme=self.scheme or "", port=self.port
        )
        if self.pk is not None:
            claims = claims.exclude(pk=self.pk)
        return claims.first()


class HostCheck(Authority):
    """No data of its own: gives the admin's "Check a host" page a row in the admin index."""

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = _("host check")
        verbose_name_plural = _("Check a host")


class PolicyStamp(models.Model):
    """One row whose ``version`` moves with every committed change to the policy."""

    version = models.BigIntegerField(default=0)
    changed_at = models.DateTimeField(null=True)

    class Meta:
        verbose_name = _("policy stamp")
        default_permissions = ()

    def __str__(self) -> str:
        return str(self.version)


class MismatchLog(models.Model):
    """One row per (deployment, reason, host, port, scheme, time window) hostguard refused.

    Written only by :mod:`hostguard.audit`, in the background: ``count`` is exact, the
    sample (method, path, remote address, user agent) is the first request of the window.
    """

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
        Tenant,
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
        if self.reason == Reason.MALFORMED_HOST or self.host == OVERFLOW_HOST:
            return self.host
        return format_authority(self.scheme, self.host, self.port)
