"""Support for browser tests: Playwright driving Debian's Chromium, headless.

Not a test module. Playwright's own browser download does not work on these
machines, so the tests launch ``/usr/bin/chromium`` (``apt-get install chromium``).
When ``CI=true`` a missing Chromium or Playwright fails the tests; elsewhere they
are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("BROWSER_TESTS_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
README_SCREENSHOTS = Path(__file__).resolve().parent / "readme_screenshots"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def unavailable(reason: str) -> None:
    """Fail under CI (a skipped browser test there is a defect), skip elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"browser tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def chromium(
    host_map: dict[str, str] | None = None, *, home: Path | None = None, net_log: Path | None = None
) -> Iterator[Any]:
    """A headless Chromium; ``host_map`` sends those host names to loopback addresses.

    With ``{"acme.test": "127.0.0.1"}`` the browser connects to 127.0.0.1 and sends
    ``Host: acme.test:PORT``, as it would for a real tenant domain.

    ``home`` becomes the browser's ``HOME``: Chromium on Linux trusts the certificate
    authorities of ``$HOME/.pki/nssdb`` (see :func:`tests.tls.nss_home`). ``net_log``
    is where Chromium writes its NetLog (JSON, complete once the browser has closed):
    the connections it opened and reused, and why it restarted a request.
    """
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright is not installed: pip install -r requirements.txt")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    args = list(ARGS)
    if host_map:
        rules = ", ".join(f"MAP {name} {address}" for name, address in host_map.items())
        args.append(f"--host-resolver-rules={rules}")
    if net_log is not None:
        args.append(f"--log-net-log={net_log}")
    env: dict[str, str | float | bool] | None = {**os.environ, "HOME": str(home)} if home is not None else None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=args, env=env, timeout=30_000
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str, *, readme: bool = False) -> Path:
    """Save ``tests/screenshots/NAME.png``; with ``readme`` and ``UPDATE_README_SCREENSHOTS=1``
    also refresh the copy the README shows (``tests/readme_screenshots/``)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    target = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=False)
    if readme and os.environ.get("UPDATE_README_SCREENSHOTS") == "1":
        README_SCREENSHOTS.mkdir(exist_ok=True)
        shutil.copyfile(target, README_SCREENSHOTS / target.name)
    return target
