"""Authorities as staff and code write them: normalised on save, validated, never claimed twice;
and the rule that a host name belongs to one tenant (hostguard.claims)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from hostguard.claims import Holding, find_shared, shared_names, wildcards_covering
from hostguard.models import Authority, Deployment, get_tenant_model

# hostguard.Tenant, or the site's own model (tests/settings_swapped.py runs these tests with one).
Tenant = get_tenant_model()

pytestmark = pytest.mark.django_db


def make_tenant(slug: str, name: str | None = None) -> Tenant:
    deployment, _ = Deployment.objects.get_or_create(name="eu-1")
    return Tenant.objects.create(name=name or slug.title(), slug=slug, deployment=deployment)


@pytest.mark.parametrize(
    ("entered", "stored", "shown"),
    [
        ("Bücher.TEST.", "xn--bcher-kva.test", "bücher.test"),
        ("ÖBB.at", "xn--bb-eka.at", "öbb.at"),
        ("faß.de", "xn--fa-hia.de", "faß.de"),
        ("*.Example.COM", "*.example.com", "*.example.com"),
        ("  shop.example.  ", "shop.example", "shop.example"),
        ("2001:DB8::1", "[2001:db8::1]", "[2001:db8::1]"),
        ("192.0.2.1", "192.0.2.1", "192.0.2.1"),
    ],
)
def test_create_stores_the_normalised_host(entered: str, stored: str, shown: str) -> None:
    authority = Authority.objects.create(tenant=make_tenant("acme"), host=entered)
    assert authority.host == stored
    authority.refresh_from_db()
    assert authority.host == stored
    assert authority.unicode_host == shown
    assert Authority.objects.filter(host=stored).count() == 1


def test_scheme_is_stored_lower_case() -> None:
    authority = Authority.objects.create(tenant=make_tenant("acme"), host="shop.example", scheme="HTTPS")
    authority.refresh_from_db()
    assert authority.scheme == "https"
    assert str(authority) == "https://shop.example"


@pytest.mark.parametrize(
    ("host", "mentions"),
    [
        ("", "host name"),
        ("a..b", "empty label"),
        ("under_score.example", "under_score"),
        ("a.*.example", "wildcard"),
        ("💩.la", "U+1F4A9"),
        ("shop.example:8080", "port"),
        ("https://shop.example/", "url"),
    ],
)
def test_invalid_host_raises_validation_error_and_saves_nothing(host: str, mentions: str) -> None:
    tenant = make_tenant("acme")
    with pytest.raises(ValidationError) as caught:
        Authority.objects.create(tenant=tenant, host=host)
    messages = caught.value.message_dict["host"]
    assert mentions.lower() in " ".join(messages).lower()
    assert not Authority.objects.exists()


def test_full_clean_reports_an_invalid_host_on_the_host_field() -> None:
    authority = Authority(tenant=make_tenant("acme"), host="-bad.example")
    with pytest.raises(ValidationError) as caught:
        authority.full_clean()
    assert list(caught.value.message_dict) == ["host"]
    assert "hyphen" in caught.value.message_dict["host"][0]


def test_full_clean_normalises() -> None:
    authority = Authority(tenant=make_tenant("acme"), host="Bücher.TEST.", scheme="http")
    authority.full_clean()
    assert (authority.host, authority.scheme) == ("xn--bcher-kva.test", "http")


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"host": "shop.example"}, {"host": "shop.example"}),
        ({"host": "shop.example"}, {"host": "SHOP.example."}),
        ({"host": "bücher.test"}, {"host": "xn--bcher-kva.test"}),
        ({"host": "*.example.com"}, {"host": "*.EXAMPLE.com"}),
        ({"host": "shop.example", "scheme": "https"}, {"host": "shop.example", "scheme": "HTTPS"}),
        ({"host": "shop.example", "port": 8443}, {"host": "shop.example", "port": 8443}),
        ({"host": "::1", "port": 8443}, {"host": "[0:0::1]", "port": 8443}),
    ],
)
def test_duplicate_claim_is_refused_by_the_database(first: dict[str, object], second: dict[str, object]) -> None:
    Authority.objects.create(tenant=make_tenant("acme"), **first)
    other = make_tenant("globex")
    with pytest.raises(IntegrityError), transaction.atomic():
        Authority.objects.create(tenant=other, **second)
    assert Authority.objects.count() == 1
    assert Authority.objects.get().tenant.slug == "acme"


def test_full_clean_names_the_tenant_holding_the_claim() -> None:
    Authority.objects.create(tenant=make_tenant("acme", name="Acme Corporation"), host="bücher.test")
    duplicate = Authority(tenant=make_tenant("globex"), host="Bücher.TEST.")
    with pytest.raises(ValidationError) as caught:
        duplicate.full_clean()
    message = " ".join(caught.value.message_dict["host"])
    assert "Acme Corporation" in message
    assert "xn--bcher-kva.test" in message


def test_full_clean_names_the_tenant_for_a_port_claim() -> None:
    Authority.objects.create(tenant=make_tenant("acme", name="Acme Corporation"), host="shop.example", port=8443)
    duplicate = Authority(tenant=make_tenant("globex"), host="shop.example", port=8443)
    with pytest.raises(ValidationError) as caught:
        duplicate.full_clean()
    assert "Acme Corporation" in " ".join(caught.value.message_dict["host"])


def test_editing_an_authority_is_not_a_clash_with_itself() -> None:
    authority = Authority.objects.create(tenant=make_tenant("acme"), host="shop.example")
    authority.note = "renewed"
    authority.full_clean()
    authority.save()
    assert Authority.objects.get().note == "renewed"


@pytest.mark.parametrize(
    "other",
    [
        {"host": "shop.example", "port": 8443},
        {"host": "shop.example", "scheme": "https"},
        {"host": "*.shop.example"},
        {"host": "www.shop.example"},
    ],
)
def test_distinct_claims_on_the_same_host_coexist(other: dict[str, object]) -> None:
    Authority.objects.create(tenant=make_tenant("acme"), host="shop.example")
    authority = Authority(tenant=make_tenant("globex"), **other)
    authority.full_clean()
    authority.save()
    assert Authority.objects.count() == 2


# --- a host name belongs to one tenant ------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "shared"),
    [
        ("shop.example", "shop.example", True),
        ("shop.example", "www.shop.example", False),
        ("*.shop.example", "www.shop.example", True),
        ("*.shop.example", "a.b.shop.example", True),
        ("*.shop.example", "shop.example", False),  # a wildcard never covers its own apex
        ("*.shop.example", "*.a.shop.example", True),
        ("*.example", "*.shop.example", True),
        ("*.shop.example", "*.shop.example", True),
        ("*.shop.example", "*.other.example", False),
        ("*.shop.example", "xshop.example", False),
        ("*.shop.example", "www.notshop.example", False),
        ("10.0.0.1", "10.0.0.1", True),
        ("[::1]", "[::1]", True),
    ],
)
def test_which_patterns_share_names(first: str, second: str, shared: bool) -> None:
    for new, old in ((first, second), (second, first)):
        found = find_shared([Holding(new, "acme", new)], [Holding(old, "globex", old), Holding(new, "acme", new)])
        assert bool(found) is shared, (new, old)


def test_wildcards_covering_a_host() -> None:
    assert wildcards_covering("a.b.example") == ["*.b.example", "*.example"]
    assert wildcards_covering("*.b.example") == ["*.b.example", "*.example"]
    assert wildcards_covering("10.0.0.1") == []
    assert wildcards_covering("[::1]") == []


def test_shared_names_reads_other_tenants_claims_at_any_port_and_scheme() -> None:
    globex = make_tenant("globex")
    acme = make_tenant("acme")
    Authority.objects.create(tenant=globex, host="shop.example", port=8443, scheme="https")
    Authority.objects.create(tenant=globex, host="*.globex.example")
    own = Authority.objects.create(tenant=acme, host="acme.example")
    found = shared_names(["shop.example", "x.globex.example", "*.example", "acme.example"], acme.pk)
    assert set(found) == {"shop.example", "x.globex.example", "*.example"}
    assert [h.label for h in found["shop.example"].holdings] == ["https://shop.example:8443"]
    assert found["*.example"].owners == ["Globex"]
    assert found["*.example"].total == 2
    # The tenant's own claims never count, nor the rows being edited.
    assert shared_names(["acme.example"], globex.pk, exclude=[own.pk]) == {}
    # A new tenant (no primary key yet) shares with everyone.
    assert set(shared_names(["acme.example"], None)) == {"acme.example"}


def test_an_authority_reports_its_shared_names() -> None:
    Authority.objects.create(tenant=make_tenant("globex", "Globex"), host="*.globex.example")
    claim = Authority(tenant=make_tenant("acme"), host="x.globex.example")
    shared = shared_names([claim.host], claim.tenant_id).get(claim.host)
    assert shared is not None
    assert shared.describe() == "x.globex.example shares host names with the tenant “Globex” (*.globex.example)."
    # The model does not refuse it: the rule is a confirmation staff give, in the admin or on import.
    claim.full_clean()
    claim.save()
    assert shared_names(["y.acme.example"], claim.tenant_id, exclude=[claim.pk]) == {}


def test_find_shared_works_in_memory_and_reports_a_pair_once() -> None:
    held = [Holding("*.shop.example", "globex", "*.shop.example"), Holding("a.example", "initech", "a.example")]
    new = [
        Holding("x.shop.example", "acme", "x.shop.example"),
        Holding("x.shop.example", "initech", "https://x.shop.example"),
        Holding("*.x.shop.example", "acme", "*.x.shop.example"),  # not over its apex x.shop.example
    ]
    found = dict(find_shared(new, held + new))
    assert found[new[0]] == [held[0], new[1]]  # under globex's wildcard, and initech's new claim
    assert found[new[1]] == [held[0]]  # its pair with acme's claim was reported already
    assert found[new[2]] == [held[0]]
