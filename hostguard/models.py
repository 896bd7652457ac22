"""Deployments, tenants and the authorities they claim; the policy version stamp.

Every write through the ORM — ``save()``, ``delete()``, and the queryset's
``update()``, ``bulk_create()``, ``bulk_update()`` and ``delete()`` — tells the policy,
so every process learns of it within ``HOSTGUARD_REFRESH_SECONDS``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from django.apps import apps as django_apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, router, transaction
from django.db.models import Q
from django.db.models.fields.related_descriptors import ForwardManyToOneDescriptor
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from hostguard import changes
from hostguard.changes import AUTHORITY, DEPLOYMENT, LARGE_CHANGE, TENANT, Change, everything
from hostguard.decision import Reason
from hostguard.hosts import InvalidHost, format_authority, normalise_host, to_unicode


class PolicyQuerySet(models.QuerySet[Any]):
    """A queryset whose bulk writes, which send no model signals, still reach the policy.

    Each write names the rows it touches (and, for authorities, the hosts they were
    stored under), so that every process can apply just that change; the write and
    its record commit together (one transaction, also in autocommit).
    """

    def update(self, **kwargs: Any) -> int:
        kind = self.model.policy_kind
        moved = kind == AUTHORITY and "host" in kwargs
        with transaction.atomic(using=self.db, savepoint=False):
            # The rows named in the change log are exactly the rows updated: locked
            # while this transaction lasts, so no one else changes them in between.
            locked = self.select_for_update()
            rows = list(locked.values_list("pk", "host") if moved else locked.values_list("pk", flat=True))
            if not rows:
                return 0
            if len(rows) > LARGE_CHANGE:
                count = super().update(**kwargs)
                changes.send(self.db, everything())
                return count
            pks = [row[0] for row in rows] if moved else rows
            count = 0
            for start in range(0, len(pks), _CHUNK):
                chunk = pks[start : start + _CHUNK]
                rows_of = self.model._base_manager.using(self.db).filter(pk__in=chunk)
                count += models.QuerySet.update(rows_of, **kwargs)
            if moved:
                changes.send(self.db, [Change(kind, pk, host) for pk, host in rows])
            else:
                changes.send(self.db, [Change(kind, pk) for pk in pks])
            return count

    def bulk_create(self, objs: Any, *args: Any, **kwargs: Any) -> list[Any]:
        with transaction.atomic(using=self.db, savepoint=False):
            created = super().bulk_create(objs, *args, **kwargs)
            if created:
                kind = self.model.policy_kind
                if kwargs.get("update_conflicts") or any(obj.pk is None for obj in created):
                    # Rows overwritten in place (their old hosts unknown), or a backend
                    # that returns no ids: every process reads everything again.
                    changes.send(self.db, everything())
                else:
                    changes.send(self.db, [Change(kind, obj.pk) for obj in created])
            return created

    def bulk_update(self, objs: Any, *args: Any, **kwargs: Any) -> int:
        # Django's bulk_update calls update() once per batch: record one change.
        with transaction.atomic(using=self.db, savepoint=False), changes.batch():
            return super().bulk_update(objs, *args, **kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        # One change for every row the delete cascades to, not one per row; the hosts
        # of the authorities it removes are read (and locked) in one query.
        # (The contexts are entered in order: the hosts are read inside the transaction.)
        with (
            transaction.atomic(using=self.db, savepoint=False),
            changes.batch(),
            _deleting(_authorities_of(self, self.db)),
        ):
            return super().delete()


class PolicyModel(models.Model):
    """A model whose rows make up the policy: every write is recorded as a change,
    in the same transaction as the write."""

    #: What the change log calls a row of this model.
    policy_kind: ClassVar[str]

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using, savepoint=False):
            super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        queryset = type(self)._base_manager.using(using).filter(pk=self.pk)
        with (
            transaction.atomic(using=using, savepoint=False),
            changes.batch(),
            _deleting(_authorities_of(queryset, using)),
        ):
            return super().delete(*args, **kwargs)


_deleted_hosts = threading.local()


def _authorities_of(queryset: models.QuerySet[Any], using: str) -> models.QuerySet[Any]:
    """The authorities a delete of ``queryset`` removes: its own rows, or its tenants'."""
    model = queryset.model
    if model is Authority:
        return queryset
    if model is Authority._meta.get_field("tenant").related_model:
        return Authority._base_manager.using(using).filter(tenant__in=queryset.values("pk"))
    return Authority._base_manager.none()


@contextmanager
def _deleting(authorities: models.QuerySet[Any]) -> Iterator[None]:
    """Read (and lock) the hosts of the authorities a delete removes, for the change log."""
    known: dict[Any, str] = getattr(_deleted_hosts, "known", {})
    previous = dict(known)
    known.update(authorities.select_for_update().values_list("pk", "host"))
    _deleted_hosts.known = known
    try:
        yield
    finally:
        _deleted_hosts.known = previous


#: Ids per ``UPDATE … WHERE id IN (…)``.
_CHUNK = 500


class _DeploymentDescriptor(ForwardManyToOneDescriptor):  # type: ignore[type-arg]
    def get_object(self, instance: Any) -> Any:
        # request.tenant (hostguard.tenants) carries the snapshot's deployment names on its
        # state: its deployment is made from them on first access, with no query.
        names = getattr(instance._state, "hostguard_deployments", None)
        if names is not None:
            deployment_id = getattr(instance, self.field.attname)
            if deployment_id in names:
                model = self.field.related_model
                # Only id and name loaded, the rest deferred: as an only() queryset makes it.
                return model.from_db(router.db_for_read(model), ["id", "name"], [deployment_id, names[deployment_id]])
        return super().get_object(instance)


class DeploymentForeignKey(models.ForeignKey):  # type: ignore[type-arg]
    """``AbstractTenant.deployment``: a plain ``ForeignKey`` to the deployment (and so in
    migrations), whose ``request.tenant`` instances read their deployment from hostguard's
    snapshot."""

    forward_related_accessor_class = _DeploymentDescriptor

    def deconstruct(self) -> Any:
        name, _path, args, kwargs = super().deconstruct()
        return name, "django.db.models.ForeignKey", args, kwargs


class Deployment(PolicyModel):
    policy_kind = DEPLOYMENT

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


#: The tenant model when the site names none (``HOSTGUARD_TENANT_MODEL``).
DEFAULT_TENANT_MODEL = "hostguard.Tenant"


def tenant_model_label() -> str:
    """``HOSTGUARD_TENANT_MODEL`` as the relations to the tenant model read it.

    Read when the models are defined, as Django reads ``AUTH_USER_MODEL``: a relation's
    target cannot change while the process runs. A value that is no model label falls
    back to the default here, so the site still starts and the system checks can say
    what is wrong (``hostguard.E015``); so does a model of an app that is not installed.
    """
    value = getattr(settings, "HOSTGUARD_TENANT_MODEL", DEFAULT_TENANT_MODEL)
    if not isinstance(value, str) or value.count(".") != 1 or not all(value.split(".")):
        return DEFAULT_TENANT_MODEL
    if value.split(".")[0] not in {config.label for config in django_apps.get_app_configs()}:
        return DEFAULT_TENANT_MODEL  # an app that is not installed
    return value


class TenantManager(models.Manager.from_queryset(PolicyQuerySet)):  # type: ignore[misc]
    """The tenant model's manager: its bulk writes reach the policy too.

    A site's tenant model with a manager of its own derives it from this one (or builds
    it ``from_queryset()`` a subclass of :class:`PolicyQuerySet`).
    """


class AbstractTenant(PolicyModel):
    """What hostguard needs of a tenant: derive the site's own tenant model from it and
    name that model in ``HOSTGUARD_TENANT_MODEL`` (as ``AUTH_USER_MODEL`` works)."""

    policy_kind = TENANT

    name = models.CharField(_("name"), max_length=200, help_text=_("The customer's name, as staff know it."))
    slug = models.SlugField(
        _("slug"),
        max_length=64,
        unique=True,
        help_text=_("A short unique identifier: letters, digits, hyphens and underscores."),
    )
    deployment = DeploymentForeignKey(
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

    objects = TenantManager()

    class Meta:
        abstract = True
        ordering = ["name"]
        verbose_name = _("tenant")
        verbose_name_plural = _("tenants")

    def __str__(self) -> str:
        return self.name


class Tenant(AbstractTenant):
    """hostguard's own tenant model, unless ``HOSTGUARD_TENANT_MODEL`` names the site's."""

    class Meta(AbstractTenant.Meta):
        swappable = "HOSTGUARD_TENANT_MODEL"


class Authority(PolicyModel):
    policy_kind = AUTHORITY

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
        tenant_model_label(),
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
    #: The newest version whose changes the log no longer holds (``hostguard_prune``):
    #: a process at an older version must read the whole policy again.
    pruned_through = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = _("policy stamp")
        default_permissions = ()

    def __str__(self) -> str:
        return str(self.version)


class PolicyChange(models.Model):
    """What one committed write changed: a row per touched object, at the version it made.

    Written by :mod:`hostguard.store` in the writer's transaction; a process at version
    *v* reads the rows after *v* and applies just those changes to its snapshot.
    """

    version = models.BigIntegerField(db_index=True)
    kind = models.CharField(max_length=16)
    object_id = models.BigIntegerField(null=True)
    #: An authority's host pattern before the change, when the change moved it.
    old_host = models.CharField(max_length=255, blank=True, default="")
    #: The same instant as the stamp's ``changed_at`` at this version: a process compares
    #: it with its own snapshot's, to tell a version it saw rolled back from the real one.
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("policy change")
        default_permissions = ()

    def __str__(self) -> str:
        return "%d %s %s" % (self.version, self.kind, self.object_id)


def get_tenant_model() -> type[AbstractTenant]:
    """The model hostguard's tenants are: ``HOSTGUARD_TENANT_MODEL``, ``hostguard.Tenant`` by default.

    Raises ``ImproperlyConfigured`` when the setting names no installed model (the
    system check ``hostguard.E015`` says so with a hint).
    """
    label = getattr(settings, "HOSTGUARD_TENANT_MODEL", DEFAULT_TENANT_MODEL)
    try:
        model = django_apps.get_model(label, require_ready=False)
    except (ValueError, AttributeError):
        raise ImproperlyConfigured("HOSTGUARD_TENANT_MODEL must be of the form 'app_label.ModelName'.") from None
    except LookupError:
        raise ImproperlyConfigured(
            "HOSTGUARD_TENANT_MODEL refers to the model %r, which has not been installed." % (label,)
        ) from None
    return model


def capture_host(sender: type[Authority], instance: Authority, using: str, **kwargs: Any) -> None:
    """pre_save / pre_delete of an authority: where the database has it now (read and
    locked in the writer's transaction), so its change can say which host it leaves."""
    instance._hostguard_stored_host = None  # type: ignore[attr-defined]
    if instance.pk is None:
        return
    known = getattr(_deleted_hosts, "known", {})
    if instance.pk in known:
        stored: str | None = known[instance.pk]
    else:
        # Not what the instance says: it may have been read long ago, or never.
        rows = Authority._base_manager.using(using).select_for_update().filter(pk=instance.pk)
        stored = rows.values_list("host", flat=True).first()
    instance._hostguard_stored_host = stored  # type: ignore[attr-defined]


def record_save(sender: type[PolicyModel], instance: PolicyModel, using: str, **kwargs: Any) -> None:
    """post_save: the row changed; an authority also says which host it was stored under."""
    stored = getattr(instance, "_hostguard_stored_host", None)
    current = instance.__dict__.get("host")
    old_host = stored if stored and stored != current else ""
    changes.send(using, [Change(sender.policy_kind, instance.pk, old_host)])


def record_delete(sender: type[PolicyModel], instance: PolicyModel, using: str, **kwargs: Any) -> None:
    """post_delete: the row is gone; an authority names the host it was stored under."""
    old_host = getattr(instance, "_hostguard_stored_host", None) or ""
    changes.send(using, [Change(sender.policy_kind, instance.pk, old_host)])


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
