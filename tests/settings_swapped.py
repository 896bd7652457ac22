"""The test settings with a site's own tenant model (tests/orgs): the model-related tests run
again with these (`make test`, `.ci/run`)."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.orgs"]
HOSTGUARD_TENANT_MODEL = "orgs.Organization"
HOSTGUARD_TENANT_FIELDS = ["plan", "seats", "founded"]
