"""Admin forms: hosts typed or pasted the way staff have them, errors that say what to fix.

Parsing and normalising is :mod:`hostguard.hosts`' job; these forms only decide which
field an error belongs to, merge a pasted URL's scheme and port into their own
fields, and ask the lockout guard before a change that could lock staff out.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.http import HttpRequest
from django.utils.text import capfirst
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from hostguard.admin import lockout, sharing
from hostguard.claims import SharedNames, shared_names
from hostguard.decide import ProbeError, probe
from hostguard.hosts import (
    AuthoritySpec,
    InvalidHost,
    format_authority,
    parse_authority,
    parse_port,
)
from hostguard.models import AbstractTenant, Authority, Deployment

HOST_HELP = _(
    "Type or paste a host name (Unicode is fine: it is stored in punycode), *.example.com for every name "
    "under example.com, an IP address, host:port, or a whole URL such as https://shop.example:8443/path — "
    "its scheme and port fill the scheme and port fields and the path is ignored."
)
PORT_HELP = _("A number from 1 to 65535. Leave blank to accept any port.")
SCHEME_HELP = _("http or https; “any” accepts both.")


class PortField(forms.CharField):
    """A port typed as text: blank for any port, otherwise 1–65535, with hostguard's messages."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.TextInput(attrs={"inputmode": "numeric", "size": 6, "maxlength": 12}))
        super().__init__(empty_value=None, **kwargs)

    def to_python(self, value: Any) -> int | None:  # type: ignore[override]
        text = super().to_python(value)
        if text is None:
            return None
        try:
            return parse_port(text)
        except InvalidHost as exc:
            raise ValidationError(exc.message, code="invalid_port") from None


class HostField(forms.CharField):
    """The host box: a host, ``host:port``, a wildcard or a whole URL."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 2048)
        kwargs.setdefault("help_text", HOST_HELP)
        kwargs.setdefault("error_messages", {"required": _("Enter a host name.")})
        attrs = {"size": 40, "autocapitalize": "none", "spellcheck": "false"}
        kwargs.setdefault("widget", forms.TextInput(attrs=attrs))
        super().__init__(**kwargs)


class AuthorityForm(forms.ModelForm):
    """One authority; the host box may carry the scheme and port (a pasted URL).

    A claim on host names another tenant holds is refused until "Claim it anyway" is ticked.
    """

    host = HostField(label=capfirst(_("host")))
    port = PortField(label=capfirst(_("port")), help_text=PORT_HELP)
    claim_shared: forms.BooleanField | None = sharing.confirm_field()

    #: Set by the admin so the lockout guard can see which host serves the page.
    request: ClassVar[HttpRequest | None] = None
    #: The inline leaves the lockout and shared-name checks to its formset, which sees every row at once.
    check_lockout: ClassVar[bool] = True

    class Meta:
        model = Authority
        fields = ["host", "scheme", "port", "tenant", "is_active", "note"]
        help_texts = {
            "scheme": SCHEME_HELP,
            "tenant": _("The customer that claims this authority; its deployment serves it."),
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec: AuthoritySpec | None = None
        #: The other tenants' claims this one shares names with: refused, or confirmed.
        self.shared: SharedNames | None = None
        self.confirmed_shared: SharedNames | None = None

    def _update_errors(self, errors: ValidationError) -> None:
        # The model re-validates the host it was given; when the form already said
        # what is wrong with the host box, its second opinion ("Enter a host name.",
        # about the empty value it got instead) only confuses.
        if hasattr(errors, "error_dict"):
            for field in [name for name in errors.error_dict if name != NON_FIELD_ERRORS]:
                if field in self.errors:
                    del errors.error_dict[field]
            if not errors.error_dict:
                return
        super()._update_errors(errors)  # type: ignore[misc]

    def _post_clean(self) -> None:
        # After the model's own checks, so a claim on the very same authority is
        # reported as that, not as a shared name.
        super()._post_clean()  # type: ignore[misc]
        if self.check_lockout and not self.errors:
            self._refuse_shared_names()

    def _refuse_shared_names(self) -> None:
        host, tenant = self.cleaned_data.get("host"), self.cleaned_data.get("tenant")
        if not host or tenant is None:
            return
        if self.instance.pk is not None and (self.initial.get("host"), self.initial.get("tenant")) == (host, tenant.pk):
            return  # nothing newly claimed: the names are this tenant's already
        exclude = [self.instance.pk] if self.instance.pk is not None else []
        shared = shared_names([host], tenant.pk, exclude=exclude).get(host)
        if shared is None:
            return
        if self.cleaned_data.get("claim_shared"):
            self.confirmed_shared = shared
        else:
            self.shared = shared
            self.add_error("host", ValidationError(sharing.refusal(shared), code="shared"))

    def clean_host(self) -> str:
        text = self.cleaned_data["host"]
        try:
            self.spec = parse_authority(text)
        except InvalidHost as exc:
            raise ValidationError(exc.message, code="invalid_host") from None
        return self.spec.host

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None
        spec = self.spec
        if spec is not None:
            self._merge(cleaned, "scheme", spec.scheme or None, spec)
            self._merge(cleaned, "port", spec.port, spec)
        if self.check_lockout and not self.errors and self.request is not None:
            message = lockout.refusal(self.request, self._lockout_edit(cleaned))
            if message:
                raise ValidationError(message, code="lockout")
        return cleaned

    def _merge(self, cleaned: dict[str, Any], name: str, from_host: object, spec: AuthoritySpec) -> None:
        """Fill ``name`` from the host box; a value the user typed there too must agree."""
        if from_host is None or name not in self.fields:
            return
        if name in cleaned:
            typed = cleaned[name]
            if name in self.changed_data and typed not in (None, "") and typed != from_host:
                self.add_error(
                    name,
                    ValidationError(
                        gettext(
                            "The host box says %(spec)s, which gives the %(field)s %(from_host)s, but this field "
                            "says %(typed)s. Clear one of them."
                        )
                        % {
                            "spec": format_authority(spec.scheme, spec.host, spec.port),
                            "field": self.fields[name].label,
                            "from_host": from_host,
                            "typed": typed,
                        },
                        code="conflict",
                    ),
                )
                return
        cleaned[name] = from_host

    def _lockout_edit(self, cleaned: dict[str, Any]) -> lockout.Edit:
        tenant: AbstractTenant | None = cleaned.get("tenant")
        removed = [self.instance.pk] if self.instance.pk is not None else []
        if tenant is None:
            return lockout.replace_authorities(removed, [])
        claim = lockout.Claim(
            id=self.instance.pk,
            host=cleaned["host"],
            port=cleaned.get("port"),
            scheme=cleaned.get("scheme") or "",
            active=bool(cleaned.get("is_active")),
            tenant_id=tenant.pk,
            tenant_slug=tenant.slug,
            tenant_active=tenant.is_active,
            deployment_id=tenant.deployment_id,
            deployment=tenant.deployment.name,
        )
        return lockout.replace_authorities(removed, [claim])


class TenantForm(forms.ModelForm):
    """The tenant model's form, guarded against lockouts. It names no model: the admin
    makes it for the model it administers, with that model's every field (a site's own
    tenant model brings fields of its own)."""

    request: ClassVar[HttpRequest | None] = None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None
        if self.request is None or self.instance.pk is None or self.errors:
            return cleaned
        deployment: Deployment | None = cleaned.get("deployment")
        edit = lockout.update_tenants(
            [self.instance.pk],
            active=bool(cleaned.get("is_active")),
            deployment=(deployment.pk, deployment.name) if deployment is not None else None,
        )
        message = lockout.refusal(self.request, edit)
        if message:
            moved = deployment is not None and deployment.pk != self.instance.deployment_id
            field = "deployment" if moved else "is_active"
            self.add_error(field if field in self.changed_data else None, ValidationError(message, code="lockout"))
        return cleaned


class DeploymentForm(forms.ModelForm):
    request: ClassVar[HttpRequest | None] = None

    class Meta:
        model = Deployment
        fields = ["name", "description"]
        help_texts = {"description": _("Where it runs and who looks after it; shown to staff only.")}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None
        name = cleaned.get("name")
        if self.request is not None and self.instance.pk is not None and name and not self.errors:
            message = lockout.refusal(self.request, lockout.rename_deployment(self.instance.pk, name))
            if message:
                self.add_error("name", ValidationError(message, code="lockout"))
        return cleaned


class MoveTenantsForm(forms.Form):
    """The intermediate page of the "Move to deployment…" action.

    Nothing is preselected: the first deployment in the list is as likely as not the
    one the tenants are on. When every selected tenant is on the same deployment,
    that one is not offered at all.
    """

    deployment = forms.ModelChoiceField(
        queryset=Deployment.objects.all(),
        label=_("Move to deployment"),
        help_text=_("Every selected tenant, and all of its hosts, will be served by this deployment from now on."),
        empty_label=_("Choose a deployment…"),
        error_messages={"required": _("Choose the deployment to move the tenants to.")},
    )

    def __init__(self, *args: Any, tenants: list[AbstractTenant] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        current = {tenant.deployment_id for tenant in tenants or []}
        if len(current) == 1:
            field = self.fields["deployment"]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = Deployment.objects.exclude(pk__in=current)


class CheckHostForm(forms.Form):
    """The "Check a host" page: what a request for this host would get, right now."""

    host = forms.CharField(
        label=_("Host or URL"),
        max_length=2048,
        help_text=_(
            "The Host header as a client sends it (shop.example, shop.example:8443), a Unicode name, or a "
            "whole URL; a URL's path counts (exempt paths, HOSTGUARD_ADMIN_HOSTS)."
        ),
        error_messages={"required": _("Enter a host name.")},
        widget=forms.TextInput(attrs={"size": 50, "autofocus": True, "autocapitalize": "none", "spellcheck": "false"}),
    )
    scheme = forms.ChoiceField(
        label=_("Scheme"),
        required=False,
        choices=[("", _("as in the URL, else https")), ("https", "https"), ("http", "http")],
        help_text=_("The scheme the request arrives with (after TLS termination)."),
    )
    port = PortField(
        label=_("Port"),
        help_text=_("Leave blank to use the port in the host, or the scheme's default (80 or 443)."),
    )
    sni = forms.CharField(
        label=_("TLS server name"),
        required=False,
        max_length=255,
        help_text=_(
            "The name the TLS connection was opened for (SNI), to check HTTP/2 connection reuse. Leave blank for none."
        ),
        widget=forms.TextInput(attrs={"size": 40, "autocapitalize": "none", "spellcheck": "false"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None
        if "host" not in cleaned or self.errors:
            return cleaned
        try:
            probe(cleaned["host"], cleaned.get("scheme") or None, cleaned.get("port"), cleaned.get("sni") or None)
        except ProbeError as exc:
            self.add_error(exc.field, exc.message)
        except InvalidHost as exc:
            self.add_error("sni", exc.message)
        return cleaned
