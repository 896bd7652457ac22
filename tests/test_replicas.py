"""HOSTGUARD_DATABASE: the snapshot is read from a replica; writes go where the routers send them.

A site with a primary and a read replica — two real SQLite files, "replication"
being a copy of the primary onto the replica — and the usual read/write router. The
snapshot follows the replica, lag included: a change written to the primary is
served once it has reached the replica, and the stamp that announces it travels with
it, so no process rebuilds from a replica that has not caught up yet.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import e2e

pytestmark = pytest.mark.e2e

SETTINGS = """
import os
from project.settings import *  # noqa

DATABASES["replica"] = {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["REPLICA_PATH"]}
DATABASE_ROUTERS = ["replica_settings.PrimaryReplicaRouter"]
HOSTGUARD_DATABASE = "replica"
HOSTGUARD_ALWAYS_ALLOW = []


class PrimaryReplicaRouter:
    def db_for_read(self, model, **hints):
        return "replica"

    def db_for_write(self, model, **hints):
        return "default"

    def allow_relation(self, obj1, obj2, **hints):
        return True
"""

SCRIPT = r"""
import json, os, sqlite3, sys
from django.db import connections
from django.test import Client
from hostguard.models import Authority, Deployment, Tenant
from hostguard.policy import policy

policy.background = False  # every read on this thread, in the order this script sets

def status(host):
    return Client().get("/api/ping", headers={"host": host}).status_code

def replicate():
    connections["replica"].close()
    with sqlite3.connect(sys.argv[1]) as primary, sqlite3.connect(os.environ["REPLICA_PATH"]) as replica:
        primary.backup(replica)

out = {}
deployment = Deployment.objects.create(name="eu-1")
tenant = Tenant.objects.create(name="Acme", slug="acme", deployment=deployment)
Authority.objects.create(tenant=tenant, host="acme.example")
out["rows"] = {alias: Authority.objects.using(alias).count() for alias in ("default", "replica")}
out["before"] = status("acme.example")
def moved():
    version = policy.snapshot.version
    return policy.advance().version != version

out["moved_before"] = moved()
replicate()
out["moved_after"] = moved()
out["after"] = status("acme.example")
out["foreign"] = status("evil.example")
print(json.dumps(out))
"""


def test_the_snapshot_is_read_from_the_replica_and_follows_its_lag(tmp_path: Path) -> None:
    (tmp_path / "replica_settings.py").write_text(SETTINGS)
    site = e2e.Site(tmp_path, deployment="eu-1")
    primary = str(tmp_path / "db.sqlite3")
    env = site.env(
        DJANGO_SETTINGS_MODULE="replica_settings",
        PYTHONPATH=str(tmp_path),
        REPLICA_PATH=str(tmp_path / "replica.sqlite3"),
    )
    site.run(["manage.py", "migrate", "--noinput", "-v", "0"], env=env)
    site.run(["manage.py", "migrate", "--noinput", "-v", "0", "--database", "replica"], env=env)
    output = site.run(["-c", "import django\ndjango.setup()\n" + SCRIPT, primary], env=env)
    result = json.loads(output.strip().splitlines()[-1])

    assert result["rows"] == {"default": 1, "replica": 0}  # written to the primary only
    assert result["before"] == 421  # not on the replica yet: not served yet
    assert result["moved_before"] is False  # the replica's stamp has not moved either
    assert result["moved_after"] is True  # replication brought the stamp along
    assert result["after"] == 200
    assert result["foreign"] == 421
