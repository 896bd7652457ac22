"""Deployments, tenants and the authorities they claim; the policy's version stamp and change log."""

from __future__ import annotations

from typing import Any

from django.apps import apps as django_apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, router
from django.db.models import Q
from django.db.models.fields.related_descriptors import ForwardManyToOneDescriptor
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from hostguard.changes import AUTHORITY, DEPLOYMENT, TENANT
from hostguard.hosts import InvalidHost, format_authority, normalise_host, to_unicode
from hostguard.models.tracking import PolicyModel, PolicyQuerySet


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
