"""Staff drive the hostguard admin in a real browser (Chromium through Playwright).

Against pytest-django's live server on loopback. The browser reaches it as
``localhost`` (in ``HOSTGUARD_ALWAYS_ALLOW``) and, through Chromium's host resolver
rules, as the tenant host ``acme.test`` — sending ``Host: acme.test:PORT`` exactly
as it would for a real customer domain. Screenshots of every page land in
``tests/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from hostguard.models import Authority, Deployment, Tenant
from tests.browser import chromium, screenshot

# serialized_rollback: the flush after a transactional test must not recreate content
# types under new ids, or a later serialized_rollback test cannot restore them.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "correct horse battery staple"
VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture(autouse=True)
def _settings(settings: Any) -> None:
    settings.HOSTGUARD_DEPLOYMENT = "local"
    settings.HOSTGUARD_ALWAYS_ALLOW = ["localhost"]
    settings.HOSTGUARD_MODE = "enforce"


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # Playwright's sync API keeps an event loop in this thread, which makes Django
    # refuse ORM calls from the test body; no Django code runs on that loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with chromium({"acme.test": "127.0.0.1", "nobody.test": "127.0.0.1"}) as launched:
        yield launched


@pytest.fixture
def site(live_server: Any, django_user_model: Any) -> dict[str, str]:
    django_user_model.objects.create_superuser("admin", "admin@example.com", PASSWORD)
    Deployment.objects.create(name="local", description="This process (HOSTGUARD_DEPLOYMENT).")
    Deployment.objects.create(name="eu-2", description="The Frankfurt fleet.")
    port = live_server.url.rsplit(":", 1)[1]
    return {"admin": live_server.url, "tenant": f"http://acme.test:{port}", "stranger": f"http://nobody.test:{port}"}


def log_in(page: Any, base: str, next_path: str) -> None:
    page.goto(f"{base}/admin/login/?next={next_path}")
    page.fill("#id_username", "admin")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{base}{next_path}")


def expect_styled_admin(page: Any) -> None:
    """The admin's CSS loaded (no bare HTML) and the page is not an error page."""
    header_color = page.eval_on_selector("#header", "e => getComputedStyle(e).backgroundColor")
    assert header_color not in ("rgba(0, 0, 0, 0)", "transparent"), header_color
    assert "Server Error" not in page.title()


def test_staff_tour(browser: Any, site: dict[str, str]) -> None:
    page = browser.new_page(viewport=VIEWPORT)
    base = site["admin"]

    page.goto(f"{base}/admin/login/?next=/admin/hostguard/")
    screenshot(page, "01-login")
    log_in(page, base, "/admin/hostguard/")
    expect_styled_admin(page)
    assert page.is_visible("text=Check a host")
    screenshot(page, "02-app-index")

    # A tenant with two hosts typed the way staff have them: Unicode, and a pasted URL.
    page.goto(f"{base}/admin/hostguard/tenant/add/")
    page.locator("#id_name").press_sequentially("Acme")
    assert page.input_value("#id_slug") == "acme"  # prepopulated as the name is typed
    page.select_option("#id_deployment", label="local")
    page.fill("#id_authorities-0-host", "Bücher.Example")
    page.click(".add-row a")
    page.fill("#id_authorities-1-host", "https://Shop.Example:8443/path?q")
    screenshot(page, "03-tenant-add")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")
    stored = {
        (
            page.input_value(f"#id_authorities-{n}-host"),
            page.input_value(f"#id_authorities-{n}-scheme"),
            page.input_value(f"#id_authorities-{n}-port"),
        )
        for n in range(2)
    }
    assert stored == {("xn--bcher-kva.example", "", ""), ("shop.example", "https", "8443")}
    unicode_forms = {text.strip() for text in page.locator("td.field-unicode_authority").all_inner_texts()}
    assert {"bücher.example", "https://shop.example:8443"} <= unicode_forms
    expect_styled_admin(page)
    screenshot(page, "04-tenant-saved", readme=True)
    acme = Tenant.objects.get(slug="acme")
    assert sorted(str(a) for a in acme.authorities.all()) == ["https://shop.example:8443", "xn--bcher-kva.example"]

    # A bad host is a field error, not a traceback, and stores nothing.
    page.goto(f"{base}/admin/hostguard/authority/add/?tenant={acme.pk}")
    page.fill("#id_host", "shop.*.example")
    page.click("input[name=_save]")
    assert page.inner_text(".field-host .errorlist") == (
        "A wildcard is allowed only as the whole leftmost label, as in *.example.com."
    )
    screenshot(page, "05-authority-error")

    # The host staff will browse the admin through, added with the authority form.
    page.goto(f"{base}/admin/hostguard/authority/add/?tenant={acme.pk}")
    page.fill("#id_host", "acme.test")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    listing = page.inner_text("#result_list")
    assert "https://shop.example:8443" in listing
    assert "bücher.example" in listing
    assert "local (this process)" in listing
    screenshot(page, "06-authority-list", readme=True)

    # The check page: the live verdict, in words.
    page.goto(f"{base}/admin/hostguard/authority/check/")
    page.fill("#id_host", "bücher.example")
    page.click("input[type=submit][value=Check]")
    assert page.inner_text("#verdict").startswith("Served")
    assert "xn--bcher-kva.example" in page.inner_text("#check-result")
    assert "Acme" in page.inner_text("#check-result")
    expect_styled_admin(page)
    screenshot(page, "07-check-served", readme=True)
    page.fill("#id_host", "https://shop.example/")
    page.click("input[type=submit][value=Check]")
    assert "421 Misdirected Request" in page.inner_text("#verdict")
    assert "none of them on port 443" in page.inner_text("#explanation")
    screenshot(page, "08-check-port-mismatch")

    # A stranger's host gets the 421 page, and the audit log records it.
    stranger = browser.new_page(viewport=VIEWPORT)
    response = stranger.goto(f"{site['stranger']}/some/path")
    assert response.status == 421
    screenshot(stranger, "09-stranger-421")
    stranger.close()
    from hostguard import audit

    audit.flush()  # the live server runs in this process: write its buffered mismatches now
    page.goto(f"{base}/admin/hostguard/mismatchlog/")
    expect_styled_admin(page)
    assert "nobody.test" in page.inner_text("#result_list")
    assert "unknown host" in page.inner_text("#result_list")
    assert not page.is_visible(".object-tools a.addlink")  # an audit trail: nothing to add by hand
    screenshot(page, "10-mismatch-log")


def test_lockout_guard_in_the_browser(browser: Any, site: dict[str, str]) -> None:
    acme = Tenant.objects.create(name="Acme", slug="acme", deployment=Deployment.objects.get(name="local"))
    serving = Authority.objects.create(tenant=acme, host="acme.test")
    Authority.objects.create(tenant=acme, host="www.acme.test")

    # Through the tenant's own host: Chromium sends Host: acme.test:PORT.
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    base = site["tenant"]
    log_in(page, base, "/admin/hostguard/authority/")
    expect_styled_admin(page)

    page.click("#result_list a:text-is('acme.test')")
    page.click("a.deletelink")
    error = page.inner_text(".messagelist .error")
    assert "you are using this admin through acme.test" in error
    assert "Nothing was changed" in error
    assert re.search(r"/authority/\d+/change/$", page.url)
    expect_styled_admin(page)
    screenshot(page, "11-lockout-delete", readme=True)
    assert Authority.objects.filter(pk=serving.pk).exists()

    # Moving the tenant away is refused on the review page, before anything moves.
    page.goto(f"{base}/admin/hostguard/tenant/")
    page.check(f"input[name=_selected_action][value='{acme.pk}']")
    page.select_option("select[name=action]", "move_to_deployment")
    page.click("button[name=index]")
    page.select_option("#id_deployment", label="eu-2")
    page.click("input[type=submit].default")
    assert "you are using this admin through acme.test" in page.inner_text("#move-refusal")
    assert page.is_visible("#moving-hosts")
    assert not page.is_visible("text=Yes, move them")
    screenshot(page, "12-lockout-move")
    acme.refresh_from_db()
    assert acme.deployment.name == "local"

    # A harmless delete through the same host goes through.
    other = Authority.objects.get(host="www.acme.test")
    page.goto(f"{base}/admin/hostguard/authority/{other.pk}/delete/")
    page.click("input[type=submit]")
    page.wait_for_selector(".messagelist .success")
    assert not Authority.objects.filter(pk=other.pk).exists()
    context.close()


def fits_without_sideways_scroll(page: Any) -> None:
    """Neither the page nor the list's own scroll box is wider than the window."""
    widths = page.evaluate(
        """() => {
            const root = document.documentElement;
            const results = document.querySelector('#changelist .results');
            return {
                page: [root.scrollWidth, root.clientWidth],
                results: results ? [results.scrollWidth, results.clientWidth] : [0, 0],
            };
        }"""
    )
    assert widths["page"][0] <= widths["page"][1], widths
    assert widths["results"][0] <= widths["results"][1], widths


def seed_mismatches() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from hostguard.models import MismatchLog

    local = Deployment.objects.get(name="local")
    globex = Tenant.objects.create(name="Globex Corporation International", slug="globex", deployment=local)
    now = timezone.now().replace(second=0, microsecond=0)
    long_host = "a-very-long-customer-subdomain-name-that-goes-on-and-on-and-on.shop.globex-corporation.example"
    rows = []
    for minute in range(90):
        moment = now - timedelta(minutes=minute)
        rows.append(("scanner.example", "unknown_host", None, moment, 40 + minute % 7))
        if minute % 3 == 0:
            rows.append((long_host, "other_deployment", globex, moment, 3))
        if minute % 10 == 0:
            rows.append(("shop.globex.example", "port_mismatch", globex, moment, 1))
    MismatchLog.objects.bulk_create(
        MismatchLog(
            deployment="local",
            reason=reason,
            host=host,
            port=8443,
            scheme="https",
            tenant=tenant,
            window_start=moment,
            first_seen=moment,
            last_seen=moment + timedelta(seconds=50),
            count=count,
            method="GET",
            path="/wp-admin/admin-ajax.php?action=revslider_show_image&img=" + "..%2F" * 60 + "wp-config.php",
            remote_addr="203.0.113.77",
            user_agent="Mozilla/5.0 (compatible; scanner/2.1; +https://scanner.example/about-this-scanner)",
        )
        for host, reason, tenant, moment, count in rows
    )


def test_mismatch_log_fits_1400_pixels_and_groups_by_host(browser: Any, site: dict[str, str]) -> None:
    seed_mismatches()
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    base = site["admin"]
    log_in(page, base, "/admin/hostguard/mismatchlog/")
    expect_styled_admin(page)
    assert page.locator("#result_list tbody tr").count() == 100
    assert page.is_visible("#result_list td.field-sample_path .hostguard-path")
    fits_without_sideways_scroll(page)
    screenshot(page, "13-mismatch-log-1400", readme=True)

    page.click("#grouped-link")
    page.wait_for_selector("#grouped_list")
    expect_styled_admin(page)
    lines = page.locator("#grouped_list tbody tr")
    assert lines.count() == 3
    first = lines.nth(0).inner_text()
    assert "scanner.example" in first
    assert "90 rows" in first
    fits_without_sideways_scroll(page)
    screenshot(page, "14-mismatch-log-grouped", readme=True)

    # A filter chosen on the grouped page keeps the grouping.
    page.click("#changelist-filter a:text-is('port mismatch')")
    page.wait_for_url(re.compile(r"/grouped/\?reason__exact=port_mismatch"))
    assert page.locator("#grouped_list tbody tr").count() == 1
    # A line's rows: the list, filtered to that host and reason.
    page.click("#grouped_list td.field-rows a")
    page.wait_for_url(re.compile(r"/mismatchlog/\?"))
    assert page.locator("#result_list tbody tr").count() == 9
    assert set(page.locator("#result_list td.field-reason").all_inner_texts()) == {"port mismatch"}


def same_line(page: Any, button: str, link: str) -> None:
    """The confirm button and the "No, take me back" link sit side by side, the same height."""
    confirm = page.locator(button).bounding_box()
    back = page.locator(link).bounding_box()
    assert confirm is not None
    assert back is not None
    assert abs(confirm["y"] - back["y"]) <= 1, (confirm, back)
    assert abs(confirm["height"] - back["height"]) <= 1, (confirm, back)
    assert back["x"] > confirm["x"] + confirm["width"]
    # Their words too: the link's text centred in its box, as the button's is.
    words = page.eval_on_selector(
        link,
        """e => { const range = document.createRange(); range.selectNodeContents(e);
                  const r = range.getBoundingClientRect(); return {y: r.y, height: r.height}; }""",
    )
    assert abs((words["y"] + words["height"] / 2) - (back["y"] + back["height"] / 2)) <= 1.5, (words, back)


def test_confirmation_pages_line_up_their_buttons(browser: Any, site: dict[str, str]) -> None:
    from hostguard.models import MismatchLog

    local = Deployment.objects.get(name="local")
    acme = Tenant.objects.create(name="Acme", slug="acme", deployment=local)
    Authority.objects.create(tenant=acme, host="acme.example")
    globex = Tenant.objects.create(name="Globex", slug="globex", deployment=local)
    Authority.objects.create(tenant=globex, host="*.globex.example")
    from django.utils import timezone

    moment = timezone.now()
    MismatchLog.objects.create(
        reason="unknown_host",
        host="x.globex.example",
        port=443,
        scheme="https",
        deployment="local",
        window_start=moment.replace(second=0, microsecond=0),
        first_seen=moment,
        last_seen=moment,
        count=3,
    )
    page = browser.new_page(viewport=VIEWPORT)
    base = site["admin"]
    log_in(page, base, "/admin/")
    # The site's admin index links the check page in hostguard's own block.
    page.click(".app-hostguard a:text-is('Check a host')")
    page.wait_for_url(f"{base}/admin/hostguard/authority/check/")

    page.goto(f"{base}/admin/hostguard/tenant/")
    page.check(f"input[name=_selected_action][value='{acme.pk}']")
    page.select_option("select[name=action]", "move_to_deployment")
    page.click("button[name=index]")
    same_line(page, "input[type=submit].default", "a.cancel-link")
    assert page.input_value("#id_deployment") == ""  # nothing preselected
    page.select_option("#id_deployment", label="eu-2")
    page.click("input[type=submit].default")
    page.wait_for_selector("#moving-hosts")
    same_line(page, "input[type=submit].default", "a.cancel-link")
    screenshot(page, "15-move-review")

    page.goto(f"{base}/admin/hostguard/mismatchlog/")
    page.check("input[name=_selected_action]")
    page.select_option("select[name=action]", "allow_host")
    page.click("button[name=index]")
    same_line(page, "input[type=submit].default", "a.cancel-link")
    page.select_option("#id_tenant", label="Acme (acme) — local")
    page.click("input[type=submit].default")
    error = page.inner_text("#shared-names")
    assert "x.globex.example shares host names with the tenant “Globex” (*.globex.example)." in error
    screenshot(page, "16-allow-shared-name", readme=True)
    page.check("#id_claim_shared")
    page.click("input[type=submit].default")
    page.wait_for_selector(".messagelist .success")
    assert "Added x.globex.example to the tenant “Acme”." in page.inner_text(".messagelist")
    assert Authority.objects.get(host="x.globex.example").tenant == acme
