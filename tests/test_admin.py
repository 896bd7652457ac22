"""The admin for deployments, tenants and authorities, the check page and the lockout guard."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connections
from django.db.models.signals import pre_save
from django.test import Client
from django.urls import reverse

from hostguard.admin import lockout
from hostguard.models import Authority, Deployment, PolicyStamp, get_tenant_model

# hostguard.Tenant, or the site's own model (tests/settings_swapped.py runs these tests with one).
Tenant = get_tenant_model()

pytestmark = pytest.mark.django_db

HERE = "local"
ADMIN_HOST = "localhost"  # in HOSTGUARD_ALWAYS_ALLOW
TENANT_HOST = "acme.test"  # a tenant's own host, served here


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.HOSTGUARD_DEPLOYMENT = HERE
    settings.HOSTGUARD_ALWAYS_ALLOW = [ADMIN_HOST]
    settings.HOSTGUARD_MODE = "enforce"


# --- helpers ------------------------------------------------------------------------------


def deployment(name: str = HERE) -> Deployment:
    return Deployment.objects.get_or_create(name=name)[0]


def tenant(slug: str, *hosts: str, where: str = HERE, active: bool = True) -> Tenant:
    """A tenant with one authority per ``[scheme://]host[:port]`` given."""
    from hostguard.hosts import parse_authority

    obj = Tenant.objects.create(name=slug.title(), slug=slug, deployment=deployment(where), is_active=active)
    for text in hosts:
        spec = parse_authority(text)
        Authority.objects.create(tenant=obj, host=spec.host, port=spec.port, scheme=spec.scheme)
    return obj


def url(name: str, *args: Any) -> str:
    """An admin page of hostguard's, or (``tenant_…``) of the tenant model, wherever it lives."""
    if name.startswith("tenant_"):
        opts = Tenant._meta
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_{name.removeprefix('tenant_')}", args=args)
    return reverse(f"admin:hostguard_{name}", args=args)


@pytest.fixture
def staff(client: Client, django_user_model: Any) -> Client:
    """A superuser's client, browsing the admin through an always-allowed host."""
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    client.defaults["HTTP_HOST"] = ADMIN_HOST
    return client


@pytest.fixture
def acme() -> Tenant:
    return tenant("acme", TENANT_HOST, "https://shop.acme.test:8443")


@pytest.fixture
def via_tenant(staff: Client, acme: Tenant) -> Client:
    """The same superuser, now browsing the admin through the tenant's own host."""
    staff.defaults["HTTP_HOST"] = TENANT_HOST
    assert staff.get(url("authority_changelist")).status_code == 200
    return staff


def messages_of(response: Any) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def authority_post(host: str, tenant_obj: Tenant, **extra: Any) -> dict[str, Any]:
    return {"host": host, "scheme": "", "port": "", "tenant": tenant_obj.pk, "is_active": "on", "note": "", **extra}


def inline_post(tenant_obj: Tenant | None, rows: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """The POST of a tenant change form: the tenant's fields and its authorities inline."""
    data: dict[str, Any] = {
        "name": tenant_obj.name if tenant_obj else "Initech",
        "slug": tenant_obj.slug if tenant_obj else "initech",
        "deployment": tenant_obj.deployment_id if tenant_obj else deployment().pk,
        "is_active": "on",
        **fields,
    }
    initial = [row for row in rows if row.get("id")]
    data.update(
        {
            "authorities-TOTAL_FORMS": str(len(rows)),
            "authorities-INITIAL_FORMS": str(len(initial)),
            "authorities-MIN_NUM_FORMS": "0",
            "authorities-MAX_NUM_FORMS": "1000",
        }
    )
    for number, row in enumerate(rows):
        values = {"host": "", "scheme": "", "port": "", "is_active": "on", "note": "", **row}
        if tenant_obj is not None:
            values.setdefault("tenant", tenant_obj.pk)
        for key, value in values.items():
            if value is False:
                continue
            data[f"authorities-{number}-{key}"] = value
    return {key: value for key, value in data.items() if value is not False}


def existing_rows(tenant_obj: Tenant) -> list[dict[str, Any]]:
    return [
        {
            "id": a.pk,
            "host": a.host,
            "scheme": a.scheme,
            "port": "" if a.port is None else str(a.port),
            "is_active": "on" if a.is_active else False,
        }
        for a in tenant_obj.authorities.order_by("pk")
    ]


def verdict(host: str) -> int:
    """What a visitor gets for ``host`` right now, through the middleware."""
    return Client().get("/api/whoami", headers={"host": host}).status_code


# --- every page loads ----------------------------------------------------------------------------


def test_every_hostguard_admin_page_loads(staff: Client, acme: Tenant) -> None:
    authority = acme.authorities.first()
    assert authority is not None
    pages = [
        reverse("admin:app_list", args=["hostguard"]),
        url("deployment_changelist"),
        url("deployment_add"),
        url("deployment_change", acme.deployment_id),
        url("tenant_changelist"),
        url("tenant_add"),
        url("tenant_change", acme.pk),
        url("tenant_delete", acme.pk),
        url("authority_changelist"),
        url("authority_add"),
        url("authority_change", authority.pk),
        url("authority_delete", authority.pk),
        url("authority_check"),
        url("authority_check") + "?host=acme.test",
    ]
    for page in pages:
        response = staff.get(page)
        assert response.status_code == 200, page


def test_check_page_is_linked_from_the_app_index_and_the_authority_list(staff: Client) -> None:
    check = url("authority_check")
    assert check in staff.get(reverse("admin:app_list", args=["hostguard"])).content.decode()
    assert check in staff.get(url("authority_changelist")).content.decode()


def test_check_page_is_linked_from_the_sites_admin_index(staff: Client, django_user_model: Any) -> None:
    index = staff.get(reverse("admin:index")).content.decode()
    block = index.split('class="app-hostguard module')[1].split("</table>")[0]
    link = url("hostcheck_changelist")
    assert f'<a href="{link}">Check a host</a>' in block
    followed = staff.get(link, follow=True)
    assert followed.redirect_chain == [(url("authority_check"), 302)]
    assert followed.context["title"] == "Check a host"
    # Only for those who may use the check page; and it is a link, not something to add.
    assert "hostcheck/add/" not in index
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_deployment"))
    staff.force_login(clerk)
    assert link not in staff.get(reverse("admin:index")).content.decode()
    assert staff.get(link).status_code == 403


def test_pages_need_staff(client: Client) -> None:
    response = client.get(url("authority_check"), headers={"host": ADMIN_HOST})
    assert response.status_code == 302
    assert "/login/" in response["Location"]


# --- the authority form ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "host", "scheme", "port"),
    [
        ("https://Shop.Example:8443/path?q", "shop.example", "https", 8443),
        ("shop.example:8080", "shop.example", "", 8080),
        ("Bücher.Example", "xn--bcher-kva.example", "", None),
        ("http://bücher.example./", "xn--bcher-kva.example", "http", None),
        ("*.Shop.Example", "*.shop.example", "", None),
        ("https://*.shop.example:8443", "*.shop.example", "https", 8443),
        ("[2001:DB8::1]:8443", "[2001:db8::1]", "", 8443),
        ("  10.0.0.1  ", "10.0.0.1", "", None),
    ],
)
def test_host_box_accepts_urls_ports_unicode_and_wildcards(
    staff: Client, typed: str, host: str, scheme: str, port: int | None
) -> None:
    owner = tenant("acme")
    response = staff.post(url("authority_add"), authority_post(typed, owner))
    assert response.status_code == 302, response.context["adminform"].form.errors
    stored = Authority.objects.get()
    assert (stored.host, stored.scheme, stored.port, stored.tenant) == (host, scheme, port, owner)


def test_typed_port_and_scheme_that_agree_with_the_url_are_fine(staff: Client) -> None:
    owner = tenant("acme")
    data = authority_post("https://shop.example:8443", owner, scheme="https", port="8443")
    assert staff.post(url("authority_add"), data).status_code == 302
    assert str(Authority.objects.get()) == "https://shop.example:8443"


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"scheme": "http"}, "scheme"), ({"port": "9000"}, "port")],
)
def test_typed_port_or_scheme_that_contradict_the_url_are_a_form_error(
    staff: Client, extra: dict[str, str], field: str
) -> None:
    owner = tenant("acme")
    response = staff.post(url("authority_add"), authority_post("https://shop.example:8443/x", owner, **extra))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "Clear one of them" in " ".join(errors[field])
    assert not Authority.objects.exists()


@pytest.mark.parametrize(
    ("typed", "field", "says"),
    [
        ("", "host", "Enter a host name"),
        ("   ", "host", "Enter a host name"),
        ("shop_1.example", "host", "may contain only letters, digits and hyphens"),
        ("-shop.example", "host", "may not start or end with a hyphen"),
        ("a..example", "host", "empty label"),
        ("a" * 64 + ".example", "host", "at most 63 characters"),
        (".".join(["abcdefghij"] * 26), "host", "too long"),
        ("shop.example:99999", "host", "is not a port"),
        ("shop.example:http", "host", "is not a port"),
        ("a.*.example", "host", "wildcard"),
        ("*.*.example", "host", "wildcard"),
        ("*.10.0.0.1", "host", "IP address"),
        ("user@shop.example", "host", "user@host"),
        ("https://user:pw@shop.example/", "host", "user@host"),
        ("https://", "host", "has a scheme but no host"),
        ("ftp://shop.example", "host", "use http or https"),
        ("1.2.3", "host", "IPv4"),
    ],
)
def test_bad_hosts_are_field_errors_and_store_nothing(staff: Client, typed: str, field: str, says: str) -> None:
    owner = tenant("acme")
    response = staff.post(url("authority_add"), authority_post(typed, owner))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert says in " ".join(errors.get(field, [])), errors
    assert len(errors[field]) == 1, errors  # one clear message, not a second opinion
    assert not Authority.objects.exists()


def test_bad_port_field_is_a_field_error(staff: Client) -> None:
    owner = tenant("acme")
    for port in ("0", "65536", "eighty", "-1"):
        response = staff.post(url("authority_add"), authority_post("shop.example", owner, port=port))
        assert response.status_code == 200
        assert "from 1 to 65535" in " ".join(response.context["adminform"].form.errors["port"])
    assert not Authority.objects.exists()


def test_a_claim_another_tenant_holds_is_a_form_error_naming_it(staff: Client) -> None:
    tenant("globex", "shop.example", "xn--bcher-kva.example")
    acme = tenant("acme")
    for typed in ("SHOP.example.", "bücher.example"):
        response = staff.post(url("authority_add"), authority_post(typed, acme))
        assert response.status_code == 200
        errors = response.context["adminform"].form.errors["host"]
        assert len(errors) == 1, errors
        assert "is already claimed by the tenant “Globex”" in errors[0]
        # The very same authority is never shared: no "Claim it anyway" for it.
        assert 'name="claim_shared"' not in response.content.decode()
    assert not Authority.objects.filter(tenant=acme).exists()


# --- a host name belongs to one tenant ---------------------------------------------------------


def shared_error(response: Any) -> str:
    assert response.status_code == 200
    return " ".join(response.context["adminform"].form.errors.get("host", []))


@pytest.mark.parametrize(
    ("typed", "names"),
    [
        ("https://globex.example", "globex.example"),  # another scheme
        ("globex.example:8443", "globex.example"),  # another port
        ("x.globex.example", "*.globex.example"),  # under its wildcard
        ("https://*.globex.example", "*.globex.example"),  # the same wildcard, another scheme
        ("*.shop.globex.example", "*.globex.example"),  # a wildcard under its wildcard
        ("*.example", "*.globex.example, globex.example"),  # a wildcard over its names
    ],
)
def test_a_claim_on_names_another_tenant_holds_needs_confirming(staff: Client, typed: str, names: str) -> None:
    tenant("globex", "globex.example", "*.globex.example")
    acme = tenant("acme", "acme.example")
    data = authority_post(typed, acme)

    refused = staff.post(url("authority_add"), data)
    error = shared_error(refused)
    assert f"shares host names with the tenant “Globex” ({names})." in error
    assert "Tick “Claim it anyway” to save it all the same." in error
    assert 'name="claim_shared"' in refused.content.decode()
    assert acme.authorities.count() == 1

    saved = staff.post(url("authority_add"), {**data, "claim_shared": "on"})
    assert saved.status_code == 302
    authority = acme.authorities.exclude(host="acme.example").get()
    entry = LogEntry.objects.get(object_id=str(authority.pk))
    assert entry.is_addition()
    assert "Confirmed a claim on shared names" in entry.get_change_message()
    assert "“Globex”" in entry.get_change_message()


def test_a_tenants_own_names_on_other_ports_and_schemes_need_no_confirming(staff: Client) -> None:
    acme = tenant("acme", "acme.example", "*.acme.example")
    tenant("globex", "globex.example")
    for typed in ("https://acme.example:8443", "acme.example:8080", "shop.acme.example", "https://*.acme.example"):
        assert staff.post(url("authority_add"), authority_post(typed, acme)).status_code == 302, typed
    assert acme.authorities.count() == 6
    assert not LogEntry.objects.filter(change_message__contains="shared").exists()


def test_editing_a_claim_without_moving_it_asks_nothing_again(staff: Client) -> None:
    globex = tenant("globex", "*.globex.example")
    acme = tenant("acme")
    shared = Authority.objects.create(tenant=acme, host="x.globex.example")  # confirmed long ago
    data = authority_post("x.globex.example", acme, note="renewed")
    assert staff.post(url("authority_change", shared.pk), data).status_code == 302
    # Moving it to another tenant is a new claim, checked again.
    initech = tenant("initech")
    moved = staff.post(url("authority_change", shared.pk), authority_post("x.globex.example", initech))
    assert "the tenant “Globex”" in shared_error(moved)
    shared.refresh_from_db()
    assert (shared.tenant, shared.note) == (acme, "renewed")
    assert globex.authorities.count() == 1


def test_a_wildcard_over_many_names_lists_a_few_and_counts_the_rest(staff: Client) -> None:
    tenant("globex", *(f"h{n}.shop.example" for n in range(8)))
    tenant("initech", "shop.example")  # the apex: not under *.shop.example
    acme = tenant("acme")
    error = shared_error(staff.post(url("authority_add"), authority_post("*.shop.example", acme)))
    assert "with the tenant “Globex” (h0.shop.example, h1.shop.example, h2.shop.example, h3.shop.example, " in error
    assert "and 3 more claims." in error
    assert "Initech" not in error


def test_the_tenant_inline_asks_before_claiming_another_tenants_names(staff: Client) -> None:
    tenant("globex", "*.globex.example")
    rows = [{"host": "x.globex.example"}, {"host": "initech.example"}]
    refused = staff.post(url("tenant_add"), inline_post(None, rows))
    assert refused.status_code == 200
    formset = refused.context["inline_admin_formsets"][0].formset
    assert "x.globex.example shares host names with the tenant “Globex” (*.globex.example)" in str(formset.errors[0])
    assert not formset.errors[1]
    assert 'name="authorities-claim_shared"' in refused.content.decode()
    assert not Tenant.objects.filter(slug="initech").exists()

    saved = staff.post(url("tenant_add"), inline_post(None, rows, **{"authorities-claim_shared": "on"}))
    assert saved.status_code == 302
    initech = Tenant.objects.get(slug="initech")
    assert sorted(initech.authorities.values_list("host", flat=True)) == ["initech.example", "x.globex.example"]
    history = LogEntry.objects.get(object_id=str(initech.pk)).get_change_message()
    assert "Confirmed a claim on shared names: x.globex.example shares host names with the tenant “Globex”" in history

    # Saving the tenant again, its claims unchanged, asks nothing.
    again = staff.post(url("tenant_change", initech.pk), inline_post(initech, existing_rows(initech), name="Initech 2"))
    assert again.status_code == 302


def test_rows_of_one_tenant_never_conflict_with_each_other(staff: Client) -> None:
    rows = [{"host": "*.initech.example"}, {"host": "www.initech.example"}, {"host": "https://initech.example:8443"}]
    assert staff.post(url("tenant_add"), inline_post(None, rows)).status_code == 302
    assert Authority.objects.count() == 3


def test_a_claim_through_the_tenant_inline_is_a_form_error_naming_the_tenant(staff: Client) -> None:
    tenant("globex", "shop.example:8443")
    response = staff.post(url("tenant_add"), inline_post(None, [{"host": "Shop.Example:8443"}]))
    assert response.status_code == 200
    formset = response.context["inline_admin_formsets"][0].formset
    assert "already claimed by the tenant “Globex”" in str(formset.errors)
    assert not Tenant.objects.filter(slug="initech").exists()


def test_duplicates_within_one_inline_submission_are_a_form_error(staff: Client) -> None:
    rows = [{"host": "Shop.Example"}, {"host": "shop.example."}, {"host": "https://shop.example"}]
    response = staff.post(url("tenant_add"), inline_post(None, rows))
    assert response.status_code == 200
    errors = response.context["inline_admin_formsets"][0].formset.errors
    assert "shop.example is already claimed by row 1 above" in " ".join(errors[1]["host"])
    assert not errors[2]  # https://shop.example is another claim
    assert not Tenant.objects.exists()
    assert not Authority.objects.exists()


def test_a_claim_race_ends_as_a_message_never_a_500(staff: Client) -> None:
    """Another writer inserts the same claim between validation and the INSERT, twice."""
    acme, globex = tenant("acme"), tenant("globex")

    def racing_writer(sender: Any, instance: Authority, **kwargs: Any) -> None:
        if instance.tenant_id == acme.pk:
            Authority.objects.bulk_create([Authority(tenant=globex, host=instance.host, port=None, scheme="")])

    pre_save.connect(racing_writer, sender=Authority)
    try:
        response = staff.post(url("authority_add"), authority_post("shop.example", acme), follow=True)
    finally:
        pre_save.disconnect(racing_writer, sender=Authority)
    assert response.status_code == 200
    assert any("saved at the same moment; nothing was saved" in m for m in messages_of(response))
    assert not Authority.objects.filter(tenant=acme).exists()


def test_a_claim_race_lost_once_is_retried_and_saved(staff: Client) -> None:
    acme, globex = tenant("acme"), tenant("globex")
    raced = []

    def racing_writer(sender: Any, instance: Authority, **kwargs: Any) -> None:
        if not raced:
            raced.append(instance.host)
            Authority.objects.bulk_create([Authority(tenant=globex, host=instance.host, port=None, scheme="")])

    pre_save.connect(racing_writer, sender=Authority)
    try:
        response = staff.post(url("authority_add"), authority_post("shop.example", acme))
    finally:
        pre_save.disconnect(racing_writer, sender=Authority)
    assert raced == ["shop.example"]
    assert response.status_code == 302
    # The racing insert was rolled back with the failed attempt; the retry saved ours.
    assert Authority.objects.get().tenant == acme


# Needs a second connection that commits while the first is in a transaction:
# PostgreSQL only (tests/conftest.py deselects it on SQLite; .ci/run runs it).
@pytest.mark.postgresql
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_claim_committed_by_another_connection_mid_save_is_a_form_error(staff: Client) -> None:
    """A real race: another connection commits the same claim between our validation and our INSERT."""
    acme, globex = tenant("acme"), tenant("globex")
    raced: list[str] = []

    def other_process(host: str) -> None:
        try:
            Authority.objects.create(tenant=globex, host=host)
        finally:
            connections.close_all()

    def racing_writer(sender: Any, instance: Authority, **kwargs: Any) -> None:
        if instance.tenant_id == acme.pk and not raced:
            raced.append(instance.host)
            thread = threading.Thread(target=other_process, args=(instance.host,))
            thread.start()
            thread.join(10)

    pre_save.connect(racing_writer, sender=Authority)
    try:
        response = staff.post(url("authority_add"), authority_post("shop.example", acme))
    finally:
        pre_save.disconnect(racing_writer, sender=Authority)
    assert raced == ["shop.example"]
    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.errors["host"])
    assert "shop.example is already claimed by the tenant “Globex”" in errors
    assert list(Authority.objects.values_list("tenant__slug", flat=True)) == ["globex"]


def test_every_form_field_has_help_text(staff: Client, acme: Tenant) -> None:
    pages = [url("deployment_add"), url("tenant_change", acme.pk), url("authority_add"), url("authority_check")]
    for page in pages:
        context = staff.get(page).context
        forms = [context["adminform"].form] if "adminform" in context else [context["form"]]
        for inline in context.get("inline_admin_formsets", []):
            forms.append(inline.formset.empty_form)
        for form in forms:
            for name, field in form.fields.items():
                if name in ("id", "DELETE", "tenant") and form.prefix:
                    continue
                assert str(field.help_text).strip(), f"{page}: {name}"


# --- the lists ---------------------------------------------------------------------------------------


def test_authority_list_shows_the_authority_as_typed_and_its_unicode_form(staff: Client) -> None:
    tenant("acme", "https://*.shop.example:8443", "bücher.example")
    tenant("globex", "globex.test", where="eu-2")
    page = staff.get(url("authority_changelist")).content.decode()
    assert "https://*.shop.example:8443" in page
    assert "xn--bcher-kva.example" in page
    assert "bücher.example" in page
    assert "local (this process)" in page
    assert "eu-2" in page


def test_deployment_list_counts_tenants_and_marks_this_process(staff: Client) -> None:
    tenant("acme", "acme.test")
    tenant("initech", where="local")
    tenant("globex", where="eu-2")
    response = staff.get(url("deployment_changelist"))
    rows = {d.name: d for d in response.context["cl"].result_list}
    assert rows["local"].tenant_count == 2
    assert rows["eu-2"].tenant_count == 1
    page = response.content.decode()
    assert "This process serves the deployment <strong>local</strong>" in page
    assert page.count('alt="True"') == 1  # only local is served here


def test_tenant_list_counts_hosts_and_filters(staff: Client) -> None:
    tenant("acme", "acme.test", "www.acme.test")
    tenant("globex", "globex.test", where="eu-2", active=False)
    response = staff.get(url("tenant_changelist"))
    counts = {t.slug: t.host_count for t in response.context["cl"].result_list}
    assert counts == {"acme": 2, "globex": 1}
    filtered = staff.get(url("tenant_changelist") + "?is_active__exact=0").context["cl"].result_list
    assert [t.slug for t in filtered] == ["globex"]
    eu2 = Deployment.objects.get(name="eu-2")
    filtered = staff.get(url("tenant_changelist") + f"?deployment__id__exact={eu2.pk}").context["cl"].result_list
    assert [t.slug for t in filtered] == ["globex"]


@pytest.mark.parametrize("term", ["acme", "Acme", "shop.acme", "bücher", "Bücher.Example", "https://BÜCHER.example/x"])
def test_tenant_search_by_name_slug_or_any_host_even_in_unicode(staff: Client, term: str) -> None:
    tenant("acme", "shop.acme.test", "bücher.example")
    tenant("globex", "globex.test")
    found = staff.get(url("tenant_changelist"), {"q": term}).context["cl"].result_list
    assert [t.slug for t in found] == ["acme"]


def test_authority_search_understands_unicode_and_urls(staff: Client) -> None:
    tenant("acme", "bücher.example", "shop.example")
    for term in ("bücher", "https://Bücher.example:443/", "xn--bcher"):
        found = staff.get(url("authority_changelist"), {"q": term}).context["cl"].result_list
        assert [a.host for a in found] == ["xn--bcher-kva.example"], term


def test_authority_filters(staff: Client) -> None:
    tenant("acme", "*.acme.test", "acme.test:8443", "10.0.0.1", "bücher.example")
    cases = {
        "kind=wildcard": ["*.acme.test"],
        "kind=ip": ["10.0.0.1"],
        "kind=idn": ["xn--bcher-kva.example"],
        "kind=name": ["acme.test", "xn--bcher-kva.example"],
        "port=explicit": ["acme.test"],
    }
    for query, hosts in cases.items():
        found = staff.get(url("authority_changelist") + "?" + query).context["cl"].result_list
        assert sorted(a.host for a in found) == hosts, query


@pytest.fixture
def big_policy() -> None:
    """100,000 authorities over 1,000 tenants in three deployments, written in bulk."""
    deployments = [deployment(name) for name in (HERE, "eu-2", "us-1")]
    Tenant.objects.bulk_create(
        Tenant(name=f"Tenant {n:04d}", slug=f"t{n:04d}", deployment=deployments[n % 3]) for n in range(1000)
    )
    tenant_ids = list(Tenant.objects.values_list("pk", flat=True))
    Authority.objects.bulk_create(
        (
            Authority(tenant_id=tenant_ids[n % 1000], host=f"h{n}.t{n % 1000:04d}.example", port=None, scheme="")
            for n in range(100_000)
        ),
        batch_size=5000,
    )


@pytest.mark.usefixtures("big_policy")
def test_list_pages_stay_fast_with_100000_authorities(staff: Client, django_assert_max_num_queries: Any) -> None:
    assert Authority.objects.count() == 100_000
    pages = [
        url("authority_changelist"),
        url("authority_changelist") + "?q=t0042&is_active__exact=1&kind=name",
        url("authority_changelist") + "?o=4",
        url("tenant_changelist"),
        url("tenant_changelist") + "?q=h4242.t0242.example&o=5",
        url("deployment_changelist"),
    ]
    for page in pages:
        # session, user, counts, the page itself, the filters' choices: never one per row.
        with django_assert_max_num_queries(10):
            response = staff.get(page)
        assert response.status_code == 200, page
        assert len(response.context["cl"].result_list) >= 1, page


@pytest.mark.usefixtures("big_policy")
def test_claim_checks_read_only_what_can_conflict_at_100000_authorities(
    staff: Client, django_assert_max_num_queries: Any
) -> None:
    owner = Tenant.objects.get(slug="t0001")
    refused = {
        "h5.t0005.example:8443": "with the tenant “Tenant 0005” (h5.t0005.example).",
        "*.t0007.example": "with the tenant “Tenant 0007” (h10007.t0007.example, h1007.t0007.example, ",
    }
    # The same few queries as with ten authorities: the host and the wildcards above it
    # (indexed), for a wildcard a few of the names under it and their count.
    for (typed, names), most in zip(refused.items(), (16, 18), strict=True):
        with django_assert_max_num_queries(most):
            response = staff.post(url("authority_add"), authority_post(typed, owner))
        assert names in shared_error(response), typed
    assert "and 95 more claims." in shared_error(response)


# --- the check page ------------------------------------------------------------------------------


def check(staff: Client, **query: str) -> Any:
    response = staff.get(url("authority_check"), query)
    assert response.status_code == 200
    return response


def test_check_a_served_host(staff: Client, acme: Tenant) -> None:
    response = check(staff, host="https://shop.acme.test:8443/cart")
    result = response.context["result"]
    assert (result.verdict, result.status, result.host, result.port, result.scheme) == (
        "allow",
        200,
        "shop.acme.test",
        8443,
        "https",
    )
    page = response.content.decode()
    assert "Served" in page
    assert "https://shop.acme.test:8443" in page
    assert "Acme" in page
    assert "claims it, and this deployment serves that tenant" in page


@pytest.mark.parametrize(
    ("query", "status", "reason", "says"),
    [
        ({"host": "nobody.test"}, 421, "unknown_host", "No authority claims nobody.test"),
        ({"host": "shop.acme.test", "scheme": "https"}, 421, "port_mismatch", "none of them on port 443"),
        ({"host": "shop.acme.test:8443", "scheme": "http"}, 421, "scheme_mismatch", "none of them over http"),
        ({"host": "globex.test"}, 421, "other_deployment", "served by the deployment “eu-2”"),
        ({"host": "initech.test"}, 421, "inactive", "is inactive"),
        ({"host": "a..b"}, 400, "malformed_host", "not a well-formed Host header"),
        ({"host": "localhost:8000"}, 200, "always_allowed", "HOSTGUARD_ALWAYS_ALLOW"),
    ],
)
def test_check_explains_every_verdict(
    staff: Client, acme: Tenant, query: dict[str, str], status: int, reason: str, says: str
) -> None:
    tenant("globex", "globex.test", where="eu-2")
    tenant("initech", "initech.test", active=False)
    response = check(staff, **query)
    result = response.context["result"]
    assert (result.status, result.reason) == (status, reason)
    assert says in response.content.decode()


def test_check_converts_a_unicode_name_as_a_browser_would(staff: Client) -> None:
    tenant("acme", "bücher.example")
    result = check(staff, host="Bücher.Example").context["result"]
    assert (result.header, result.verdict) == ("xn--bcher-kva.example", "allow")


def test_check_agrees_with_the_middleware(staff: Client, acme: Tenant) -> None:
    tenant("globex", "globex.test", where="eu-2")
    for host in ("acme.test", "acme.test:8080", "globex.test", "shop.acme.test:8443", "nobody.test", "a..b"):
        expected = check(staff, host=host, scheme="http").context["result"].status
        assert verdict(host) == expected, host


def test_check_refuses_contradictions(staff: Client) -> None:
    errors = check(staff, host="https://acme.test", scheme="http").context["form"].errors
    assert "scheme" in errors
    errors = check(staff, host="acme.test:8080", port="9090").context["form"].errors
    assert "port" in errors
    assert "host" in check(staff, host="").context["form"].errors


def test_check_is_live(staff: Client, acme: Tenant) -> None:
    assert check(staff, host="acme.test").context["result"].status == 200
    authority = acme.authorities.get(host="acme.test")
    staff.post(url("authority_change", authority.pk), authority_post("acme.test", acme, is_active=False))
    assert check(staff, host="acme.test").context["result"].reason == "inactive"


# --- every admin write reaches the policy --------------------------------------------------------------


def test_admin_edits_are_visible_to_the_next_request(staff: Client) -> None:
    globex = tenant("globex", where="eu-2")
    assert verdict("globex.test") == 421

    staff.post(url("authority_add"), authority_post("globex.test", globex))
    assert verdict("globex.test") == 421  # claimed, but served elsewhere

    here = deployment(HERE)
    staff.post(
        url("tenant_changelist"),
        {"action": "move_to_deployment", "_selected_action": [globex.pk], "deployment": here.pk, "confirm": "yes"},
    )
    assert verdict("globex.test") == 200

    staff.post(url("tenant_changelist"), {"action": "deactivate", "_selected_action": [globex.pk], "index": 0})
    assert verdict("globex.test") == 421

    staff.post(url("tenant_changelist"), {"action": "activate", "_selected_action": [globex.pk], "index": 0})
    assert verdict("globex.test") == 200

    authority = Authority.objects.get(host="globex.test")
    staff.post(url("authority_changelist"), {"action": "deactivate", "_selected_action": [authority.pk], "index": 0})
    assert verdict("globex.test") == 421

    staff.post(url("authority_delete", authority.pk), {"post": "yes"})
    assert not Authority.objects.exists()
    assert verdict("globex.test") == 421


def test_a_bulk_action_bumps_the_policy_stamp_once(staff: Client) -> None:
    owner = tenant("acme", *(f"h{n}.acme.test" for n in range(20)))
    ids = list(owner.authorities.values_list("pk", flat=True))
    before = PolicyStamp.objects.get().version
    staff.post(url("authority_changelist"), {"action": "deactivate", "_selected_action": ids, "index": 0})
    assert PolicyStamp.objects.get().version == before + 1
    staff.post(url("authority_changelist"), {"action": "delete_selected", "_selected_action": ids, "post": "yes"})
    assert not Authority.objects.exists()
    assert PolicyStamp.objects.get().version == before + 2


# --- moving tenants ------------------------------------------------------------------------------------


def test_move_lists_the_hosts_that_change_hands_then_moves(staff: Client, acme: Tenant) -> None:
    globex = tenant("globex", "globex.test", "bücher.example", where="eu-2")
    eu2 = Deployment.objects.get(name="eu-2")
    selected = {"action": "move_to_deployment", "_selected_action": [acme.pk, globex.pk]}

    choose = staff.post(url("tenant_changelist"), {**selected, "index": 0})
    assert choose.status_code == 200
    assert "Review the hosts that change hands" in choose.content.decode()

    review = staff.post(url("tenant_changelist"), {**selected, "deployment": eu2.pk})
    page = review.content.decode()
    assert "2 hosts change hands" in page
    assert "https://shop.acme.test:8443" in page
    assert "acme.test" in page
    assert "bücher.example" not in page  # Globex already lives on eu-2
    assert "Already served by eu-2, unchanged" in page
    assert "Globex" in page
    acme.refresh_from_db()
    assert acme.deployment.name == HERE  # nothing moved yet

    done = staff.post(url("tenant_changelist"), {**selected, "deployment": eu2.pk, "confirm": "yes"}, follow=True)
    acme.refresh_from_db()
    assert acme.deployment == eu2
    assert any("Moved 1 tenant (2 hosts) to the deployment eu-2" in m for m in messages_of(done))
    assert LogEntry.objects.filter(object_id=str(acme.pk), change_message__contains="eu-2").exists()
    assert verdict("acme.test") == 421


def test_move_preselects_nothing_and_never_offers_where_the_tenants_already_are(staff: Client, acme: Tenant) -> None:
    deployment("eu-2")
    deployment("aa-first")  # sorts first: the old form preselected whatever came first
    page = staff.post(
        url("tenant_changelist"), {"action": "move_to_deployment", "_selected_action": [acme.pk], "index": 0}
    )
    field = page.context["form"]["deployment"]
    choices = [label for _value, label in field.field.choices]
    assert choices == ["Choose a deployment…", "aa-first", "eu-2"]  # not "local", acme's own
    assert field.value() is None
    assert "selected>Choose a deployment…" in str(field)
    unchosen = staff.post(
        url("tenant_changelist"), {"action": "move_to_deployment", "_selected_action": [acme.pk], "deployment": ""}
    )
    assert "Choose the deployment to move the tenants to." in unchosen.content.decode()


def test_move_review_shows_ports_and_schemes_in_the_unicode_column(staff: Client) -> None:
    owner = tenant("bucher", "https://bücher.example:8443", "bücher.example:8080")
    eu2 = deployment("eu-2")
    review = staff.post(
        url("tenant_changelist"),
        {"action": "move_to_deployment", "_selected_action": [owner.pk], "deployment": eu2.pk},
    )
    table = review.content.decode().split('id="moving-hosts"')[1].split("</table>")[0]
    assert "<td>https://xn--bcher-kva.example:8443</td><td>https://bücher.example:8443</td>" in table
    assert "<td>xn--bcher-kva.example:8080</td><td>bücher.example:8080</td>" in table


def test_saving_a_host_says_how_soon_every_process_serves_it(staff: Client, settings: Any) -> None:
    settings.HOSTGUARD_REFRESH_SECONDS = 2.5
    owner = tenant("acme")
    response = staff.post(url("authority_add"), authority_post("shop.example", owner), follow=True)
    notes = messages_of(response)
    assert any("was added successfully" in note for note in notes)
    assert (
        "The change is live in this process at once and in every other process within 2.5 seconds "
        "(HOSTGUARD_REFRESH_SECONDS)." in notes
    )
    response = staff.post(url("tenant_change", owner.pk), inline_post(owner, existing_rows(owner)), follow=True)
    assert any("within 2.5 seconds" in note for note in messages_of(response))


# --- the lockout guard -----------------------------------------------------------------------------------


def assert_refused(response: Any) -> None:
    text = " ".join(messages_of(response))
    if "adminform" in (response.context or {}):
        text += str(response.context["adminform"].form.errors)
        for inline in response.context.get("inline_admin_formsets", []):
            text += str(inline.formset.non_form_errors())
    assert "you are using this admin through acme.test" in text, text
    assert "Nothing was changed" in text


def assert_still_served(via_tenant: Client) -> None:
    assert via_tenant.get(url("authority_changelist")).status_code == 200
    assert verdict(TENANT_HOST) == 200


def test_lockout_refuses_deleting_the_serving_authority(via_tenant: Client, acme: Tenant) -> None:
    serving = acme.authorities.get(host=TENANT_HOST)
    response = via_tenant.get(url("authority_delete", serving.pk), follow=True)
    assert_refused(response)
    response = via_tenant.post(url("authority_delete", serving.pk), {"post": "yes"}, follow=True)
    assert_refused(response)
    response = via_tenant.post(
        url("authority_changelist"),
        {"action": "delete_selected", "_selected_action": list(acme.authorities.values_list("pk", flat=True))},
        follow=True,
    )
    assert_refused(response)
    response = via_tenant.post(
        url("authority_changelist"),
        {"action": "delete_selected", "_selected_action": [serving.pk], "post": "yes"},
        follow=True,
    )
    assert_refused(response)
    assert Authority.objects.filter(pk=serving.pk).exists()
    assert_still_served(via_tenant)


def test_lockout_refuses_deactivating_or_rehosting_the_serving_authority(via_tenant: Client, acme: Tenant) -> None:
    serving = acme.authorities.get(host=TENANT_HOST)
    globex = tenant("globex", where="eu-2")
    for change in (
        {"is_active": False},
        {"host": "acme2.test"},
        {"port": "8443"},
        {"scheme": "https"},
        {"tenant": globex.pk},
    ):
        data = {
            key: value for key, value in {**authority_post(TENANT_HOST, acme), **change}.items() if value is not False
        }
        assert_refused(via_tenant.post(url("authority_change", serving.pk), data))
    assert_refused(
        via_tenant.post(
            url("authority_changelist"),
            {"action": "deactivate", "_selected_action": [serving.pk], "index": 0},
            follow=True,
        )
    )
    serving.refresh_from_db()
    assert (serving.host, serving.port, serving.scheme, serving.is_active, serving.tenant) == (
        TENANT_HOST,
        None,
        "",
        True,
        acme,
    )
    assert_still_served(via_tenant)


def test_lockout_refuses_moving_deactivating_or_deleting_the_serving_tenant(via_tenant: Client, acme: Tenant) -> None:
    eu2 = deployment("eu-2")
    rows = existing_rows(acme)
    assert_refused(via_tenant.post(url("tenant_change", acme.pk), inline_post(acme, rows, is_active=False)))
    assert_refused(via_tenant.post(url("tenant_change", acme.pk), inline_post(acme, rows, deployment=eu2.pk)))
    assert_refused(via_tenant.get(url("tenant_delete", acme.pk), follow=True))
    assert_refused(via_tenant.post(url("tenant_delete", acme.pk), {"post": "yes"}, follow=True))
    selected = {"_selected_action": [acme.pk]}
    for action in (
        {"action": "delete_selected", "post": "yes"},
        {"action": "deactivate", "index": 0},
        {"action": "move_to_deployment", "deployment": eu2.pk, "confirm": "yes"},
    ):
        assert_refused(via_tenant.post(url("tenant_changelist"), {**selected, **action}, follow=True))
    review = via_tenant.post(
        url("tenant_changelist"), {**selected, "action": "move_to_deployment", "deployment": eu2.pk}
    )
    assert "you are using this admin through acme.test" in review.content.decode()
    assert "Yes, move them" not in review.content.decode()
    acme.refresh_from_db()
    assert acme.is_active
    assert acme.deployment.name == HERE
    assert_still_served(via_tenant)


def test_lockout_refuses_removing_the_serving_host_through_the_inline(via_tenant: Client, acme: Tenant) -> None:
    rows = existing_rows(acme)
    serving = next(n for n, row in enumerate(rows) if row["host"] == TENANT_HOST)
    for change in ({"DELETE": "on"}, {"host": "elsewhere.test"}, {"is_active": False}, {"port": "1"}):
        changed = [dict(row, **change) if n == serving else row for n, row in enumerate(rows)]
        assert_refused(via_tenant.post(url("tenant_change", acme.pk), inline_post(acme, changed)))
    assert acme.authorities.filter(host=TENANT_HOST, is_active=True, port=None).exists()
    assert_still_served(via_tenant)


def test_lockout_refuses_renaming_the_serving_deployment(via_tenant: Client, acme: Tenant) -> None:
    here = acme.deployment
    response = via_tenant.post(url("deployment_change", here.pk), {"name": "renamed", "description": ""})
    assert_refused(response)
    here.refresh_from_db()
    assert here.name == HERE


def test_lockout_refuses_shadowing_the_serving_wildcard(staff: Client) -> None:
    acme = tenant("acme", "*.acme.test")
    globex = tenant("globex", where="eu-2")
    staff.defaults["HTTP_HOST"] = "admin.acme.test"
    response = staff.post(url("authority_add"), authority_post("admin.acme.test", globex))
    assert_refused_for(response, "admin.acme.test")
    response = staff.post(url("authority_add"), authority_post("admin.acme.test", acme, is_active=False))
    assert_refused_for(response, "admin.acme.test")
    assert Authority.objects.count() == 1
    # A more specific claim that still serves the page is fine.
    response = staff.post(url("authority_add"), authority_post("admin.acme.test", acme))
    assert response.status_code == 302


def assert_refused_for(response: Any, host: str) -> None:
    assert f"you are using this admin through {host}" in str(response.context["adminform"].form.errors)


def test_lockout_allows_harmless_writes_through_the_tenant_host(via_tenant: Client, acme: Tenant) -> None:
    other = acme.authorities.get(host="shop.acme.test")
    response = via_tenant.post(url("authority_delete", other.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Authority.objects.filter(pk=other.pk).exists()
    response = via_tenant.post(url("authority_add"), authority_post("www.acme.test", acme))
    assert response.status_code == 302
    rows = [*existing_rows(acme), {"host": "new.acme.test"}]
    response = via_tenant.post(url("tenant_change", acme.pk), inline_post(acme, rows, name="Acme Corp"))
    assert response.status_code == 302
    assert acme.authorities.count() == 3
    assert_still_served(via_tenant)


def test_lockout_does_not_apply_through_an_always_allowed_host(staff: Client, acme: Tenant) -> None:
    serving = acme.authorities.get(host=TENANT_HOST)
    response = staff.post(url("authority_delete", serving.pk), {"post": "yes"})
    assert response.status_code == 302
    assert verdict(TENANT_HOST) == 421


def test_lockout_does_not_apply_when_the_tenant_host_is_always_allowed(
    via_tenant: Client, acme: Tenant, settings: Any
) -> None:
    settings.HOSTGUARD_ALWAYS_ALLOW = [ADMIN_HOST, ".acme.test"]
    serving = acme.authorities.get(host=TENANT_HOST)
    response = via_tenant.post(url("authority_delete", serving.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Authority.objects.filter(pk=serving.pk).exists()


def test_lockout_patterns_cover_the_host_and_every_wildcard_above_it() -> None:
    assert lockout.patterns_matching("a.b.example") == ["a.b.example", "*.b.example", "*.example"]
    assert lockout.patterns_matching("[::1]") == ["[::1]"]
