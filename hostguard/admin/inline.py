"""The tenant page's authorities inline: one row per authority, checked together.

No two rows may claim the same authority, no change may lock staff out, and no
new claim may take names another tenant holds unless "Claim it anyway" is ticked.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext

from hostguard.admin import lockout, sharing
from hostguard.admin.forms import AuthorityForm
from hostguard.claims import SharedNames, shared_names
from hostguard.hosts import format_authority
from hostguard.models import Deployment


class AuthorityInlineForm(AuthorityForm):
    check_lockout = False
    claim_shared = None  # one box for the whole formset

    class Meta(AuthorityForm.Meta):
        fields = ["host", "scheme", "port", "is_active", "note"]
        widgets = {"note": forms.TextInput(attrs={"size": 16})}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["host"].widget.attrs["size"] = 30


class AuthorityInlineFormSet(forms.BaseInlineFormSet):
    """A tenant's authorities: no two rows may claim the same authority, none may lock staff out,
    and none may claim names another tenant holds unless "Claim it anyway" is ticked."""

    request: ClassVar[HttpRequest | None] = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared: list[SharedNames] = []
        self.confirmed_shared: list[SharedNames] = []

    @property
    def confirm_name(self) -> str:
        """The name of the formset's "Claim it anyway" box."""
        return "%s-claim_shared" % self.prefix

    @property
    def claim_shared(self) -> bool:
        return self.is_bound and self.data.get(self.confirm_name) in ("on", "true", "1")

    def clean(self) -> None:
        super().clean()
        self._refuse_duplicates()
        if self.request is not None and not any(self.errors) and not self.non_form_errors():
            self._refuse_lockout()
        if not any(self.errors) and not self.non_form_errors():
            self._refuse_shared_names()

    def _refuse_shared_names(self) -> None:
        claiming: dict[str, list[forms.ModelForm]] = {}
        for _number, form in self._live_forms():
            host = form.cleaned_data.get("host")
            if host and (form.instance.pk is None or form.initial.get("host") != host):
                claiming.setdefault(host, []).append(form)
        found = shared_names(list(claiming), self.instance.pk)
        for host, shared in found.items():
            if self.claim_shared:
                self.confirmed_shared.append(shared)
                continue
            self.shared.append(shared)
            for form in claiming[host]:
                form.add_error("host", ValidationError(sharing.refusal(shared), code="shared"))

    def _live_forms(self) -> list[tuple[int, forms.ModelForm]]:
        """(row number, form) of the rows that will exist after saving."""
        live = []
        for number, form in enumerate(self.forms, start=1):
            if not hasattr(form, "cleaned_data") or (form.instance.pk is None and not form.has_changed()):
                continue
            if self.can_delete and self._should_delete_form(form):  # type: ignore[attr-defined]
                continue
            live.append((number, form))
        return live

    def _refuse_duplicates(self) -> None:
        seen: dict[tuple[str, int | None, str], int] = {}
        for number, form in self._live_forms():
            data = form.cleaned_data
            if not data.get("host") or form.errors:
                continue
            key = (data["host"], data.get("port"), data.get("scheme") or "")
            if key in seen:
                form.add_error(
                    "host",
                    ValidationError(
                        gettext("%(authority)s is already claimed by row %(row)d above.")
                        % {"authority": format_authority(key[2], key[0], key[1]), "row": seen[key]},
                        code="duplicate",
                    ),
                )
            else:
                seen[key] = number

    def _tenant_state(self) -> tuple[bool, tuple[int | None, str] | None]:
        tenant = self.instance
        try:
            deployment = tenant.deployment
        except Deployment.DoesNotExist:
            return tenant.is_active, None
        return tenant.is_active, (deployment.pk, deployment.name)

    def _refuse_lockout(self) -> None:
        tenant = self.instance
        tenant_id = tenant.pk if tenant.pk is not None else lockout.NEW_TENANT_ID
        active, deployment = self._tenant_state()
        tenant_edit = lockout.update_tenants([tenant.pk], active=active, deployment=deployment)
        if tenant.pk is not None and lockout.refusal(self.request, tenant_edit):
            return  # the tenant form reports it, on the field that causes it
        removed = [form.instance.pk for form in self.initial_forms if form.instance.pk is not None]
        added = []
        for _number, form in self._live_forms():
            data = form.cleaned_data
            added.append(
                lockout.Claim(
                    id=form.instance.pk,
                    host=data["host"],
                    port=data.get("port"),
                    scheme=data.get("scheme") or "",
                    active=bool(data.get("is_active")),
                    tenant_id=tenant_id,
                    tenant_slug=tenant.slug,
                    tenant_active=active,
                    deployment_id=deployment[0] if deployment else None,
                    deployment=deployment[1] if deployment else "",
                )
            )
        message = lockout.refusal(self.request, lockout.chain(tenant_edit, lockout.replace_authorities(removed, added)))
        if message:
            raise ValidationError(message, code="lockout")
