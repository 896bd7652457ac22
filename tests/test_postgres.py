"""PostgreSQL specifics, on a throwaway database with two real connections.

The whole suite also runs on PostgreSQL in CI (DATABASE_URL=postgres://…), but its
tests live inside one transaction per test; what must hold *between* connections —
NULL ports colliding under the partial unique indexes, the version stamp becoming
visible only on commit and never for a rollback — is checked here in a separate
Django process, watched from outside by a plain psycopg connection.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests import e2e

pytestmark = pytest.mark.e2e

SCRIPT = r"""
import json, sys
import psycopg
from django.db import IntegrityError, connection, transaction
from hostguard.models import Authority, Deployment, PolicyStamp, Tenant
from hostguard.policy import policy

observer = psycopg.connect(sys.argv[1], autocommit=True)
stamp_table = PolicyStamp._meta.db_table

def observed():
    return observer.execute(f"SELECT version FROM {stamp_table} WHERE id = 1").fetchone()[0]

out = {"vendor": connection.vendor}
eu = Deployment.objects.create(name="eu-1")
us = Deployment.objects.create(name="us-1")
acme = Tenant.objects.create(name="Acme", slug="acme", deployment=eu)
globex = Tenant.objects.create(name="Globex", slug="globex", deployment=eu)

def claim(tenant, host, port=None, scheme=""):
    try:
        with transaction.atomic():
            Authority.objects.create(tenant=tenant, host=host, port=port, scheme=scheme)
        return "ok"
    except IntegrityError:
        return "refused"

out["claims"] = [
    claim(acme, "a.example"),
    claim(globex, "A.Example."),          # the same host, any port, any scheme
    claim(globex, "a.example", None, "https"),
    claim(acme, "a.example", 8443),
    claim(globex, "a.example", 8443),
    claim(globex, "a.example", 8443, "https"),
    claim(globex, "*.a.example"),
    claim(acme, "*.a.example"),
]
out["indexes"] = [
    row[0] for row in observer.execute(
        "SELECT indexdef FROM pg_indexes WHERE tablename = %s AND indexdef LIKE '%%WHERE%%' ORDER BY indexname",
        [Authority._meta.db_table],
    )
]

before = observed()
with transaction.atomic():
    Authority.objects.create(tenant=acme, host="b.example")
    out["inside_writer"] = PolicyStamp.objects.get(pk=1).version - before
    out["inside_observer"] = observed() - before
out["after_commit"] = observed() - before

before = observed()
try:
    with transaction.atomic():
        Authority.objects.create(tenant=acme, host="c.example")
        acme.deployment = us
        acme.save()
        raise RuntimeError("the admin form failed after saving")
except RuntimeError:
    pass
out["after_rollback"] = observed() - before
snapshot = policy.refresh()
out["rolled_back_host"] = snapshot.decide("c.example", 80, "http", "eu-1").reason
out["rolled_back_move"] = snapshot.decide("b.example", 80, "http", "eu-1").verdict
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    e2e.require_postgres()
    with e2e.postgres_database() as url:
        site = e2e.Site(tmp_path_factory.mktemp("postgres"), database_url=url)
        site.migrate()
        output = site.python(SCRIPT, url.replace("postgres://", "postgresql://", 1))
        yield json.loads(output.strip().splitlines()[-1])


def test_it_ran_on_postgresql(result: dict[str, Any]) -> None:
    assert result["vendor"] == "postgresql"


def test_no_two_authorities_claim_the_same_host_port_and_scheme_even_with_null_ports(result: dict[str, Any]) -> None:
    assert result["claims"] == [
        "ok",  # a.example, any port, any scheme
        "refused",  # the same, NULL port: NULLs do not slip past the unique index
        "ok",  # a.example, any port, https only
        "ok",  # a.example:8443
        "refused",  # a.example:8443 again
        "ok",  # https://a.example:8443
        "ok",  # *.a.example
        "refused",  # *.a.example again
    ]
    assert len(result["indexes"]) == 2
    assert any("WHERE (port IS NULL)" in index for index in result["indexes"])
    assert any("WHERE (port IS NOT NULL)" in index for index in result["indexes"])


def test_the_version_stamp_moves_on_commit_not_before(result: dict[str, Any]) -> None:
    assert result["inside_writer"] == 1  # bumped inside the writer's transaction...
    assert result["inside_observer"] == 0  # ...which no other connection sees yet
    assert result["after_commit"] == 1


def test_a_rolled_back_change_publishes_nothing(result: dict[str, Any]) -> None:
    assert result["after_rollback"] == 0
    # Nor does the writing process keep serving what it rolled back.
    assert result["rolled_back_host"] == "unknown_host"
    assert result["rolled_back_move"] == "allow"
