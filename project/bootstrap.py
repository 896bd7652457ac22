"""The demo's superuser `admin`, and the block `make run` ends its set-up output with.

``python -m project.bootstrap`` (``make run``) creates `admin` if it is missing, with a
generated password printed in the block; ``DJANGO_SUPERUSER_PASSWORD``, when set, is
applied on every run, to a new or an existing user. ``python -m project.bootstrap
--new-password`` (``make password``) sets a new generated password and prints it: a
password is stored hashed, so a forgotten one can only be replaced.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

USERNAME = "admin"
PASSWORD_VARIABLE = "DJANGO_SUPERUSER_PASSWORD"
# Addresses a browser on this machine reaches as "localhost", which the demo's
# HOSTGUARD_ALWAYS_ALLOW lets through to the admin.
_LOCAL_ADDRESSES = {"", "0.0.0.0", "127.0.0.1", "::", "[::]", "localhost"}


@dataclass(frozen=True)
class Outcome:
    """What happened to the superuser: ``password`` is set when it is new and generated."""

    username: str
    created: bool
    password: str | None = None
    from_environment: bool = False


def ensure_superuser(username: str = USERNAME, environ: Mapping[str, str] = os.environ) -> Outcome:
    """Create the superuser if missing; apply ``DJANGO_SUPERUSER_PASSWORD`` whenever it is set."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    given = environ.get(PASSWORD_VARIABLE) or None
    user = User.objects.filter(username=username).first()
    if user is None:
        password = given or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        return Outcome(username, created=True, password=None if given else password, from_environment=bool(given))
    if given is not None:
        if not user.check_password(given):
            _make_usable(user, given)
        return Outcome(username, created=False, from_environment=True)
    return Outcome(username, created=False)


def new_password(username: str = USERNAME) -> Outcome:
    """Give the superuser a new generated password (creating it if missing) and return it."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    password = secrets.token_urlsafe(12)
    user = User.objects.filter(username=username).first()
    if user is None:
        User.objects.create_superuser(username=username, email="", password=password)
        return Outcome(username, created=True, password=password)
    _make_usable(user, password)
    return Outcome(username, created=False, password=password)


def _make_usable(user: Any, password: str) -> None:
    # A reset must let the person in, even if the account was switched off in the admin.
    user.set_password(password)
    user.is_active = user.is_staff = user.is_superuser = True
    user.save()


def site_url(environ: Mapping[str, str] = os.environ) -> str | None:
    """The demo's address as project/gunicorn.conf.py binds it (BIND, then PORT); None for a unix socket."""
    if "BIND" in environ:
        addresses = [address.strip() for address in environ["BIND"].split(",") if address.strip()]
        address = addresses[0] if addresses else "127.0.0.1:8000"
    elif "PORT" in environ:
        address = f"0.0.0.0:{environ['PORT']}"
    else:
        address = "127.0.0.1:8000"
    if address.startswith(("unix:", "fd://")):
        return None
    address = address.removeprefix("tcp://")
    host, _, port = address.rpartition(":")
    if not host:  # gunicorn reads a bare "8000" as a host name, not a port
        host, port = address, "8000"
    if host in _LOCAL_ADDRESSES:
        host = "localhost"
    return f"http://{host}:{port}"


def summary(outcome: Outcome, environ: Mapping[str, str] = os.environ, title: str = "hostguard demo: ready") -> str:
    """The framed block printed last before gunicorn starts."""
    url = site_url(environ)
    if outcome.password is not None:
        password = f"{outcome.password}   (new: note it now, it is not shown again)"
    elif outcome.from_environment:
        password = f"the value of {PASSWORD_VARIABLE}"
    else:
        password = "unchanged (shown once, when it was created)"
    admin = f"{url}/admin/" if url else f"/admin/ on {environ.get('BIND')}"
    lines = [
        title,
        "",
        f"  Admin:      {admin}",
        f"  User name:  {outcome.username}",
        f"  Password:   {password}",
        "",
    ]
    if url:
        # curl to the address gunicorn listens on, as the README's examples do.
        direct = url.replace("://localhost:", "://127.0.0.1:")
        lines.append(f"  Try:        curl -si -H 'Host: acme.localhost' {direct}/api/whoami")
    lines += [
        f"  Lost it?    `make password` prints a new one; {PASSWORD_VARIABLE}=... make run sets yours",
        "  Other port: BIND=127.0.0.1:8001 make run",
    ]
    rule = "=" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m project.bootstrap", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--new-password", action="store_true", help="Set a new generated password for the superuser and print it."
    )
    args = parser.parse_args(argv)

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    if args.new_password:
        print("\n" + summary(new_password(), title="hostguard demo: a new password for admin"), flush=True)
    else:
        print("\n" + summary(ensure_superuser()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
