"""Create the demo's superuser `admin` once, printing its password that one time.

Run as `python -m project.bootstrap` (``make run`` does). The password comes from
``DJANGO_SUPERUSER_PASSWORD`` when set, otherwise it is generated.
"""

from __future__ import annotations

import os
import secrets


def ensure_superuser(username: str = "admin") -> None:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    if User.objects.filter(username=username).exists():
        print(f"Superuser '{username}' already exists; its password is unchanged.")
        return
    given = os.environ.get("DJANGO_SUPERUSER_PASSWORD")
    password = given or secrets.token_urlsafe(12)
    User.objects.create_superuser(username=username, email="", password=password)
    if given:
        print(f"Created superuser '{username}' with the password from DJANGO_SUPERUSER_PASSWORD.")
    else:
        print(f"Created superuser '{username}' with password: {password}")
        print("This password is shown only once: note it now.")


if __name__ == "__main__":
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    ensure_superuser()
