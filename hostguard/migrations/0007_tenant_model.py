"""The relations to the site's own tenant model (``HOSTGUARD_TENANT_MODEL``).

With hostguard's own Tenant there is nothing to do: 0001 and 0002 made these
relations. With the site's model, they are made here, after the site's migration that
creates the model — which in turn needs only 0001_initial (the Deployment table).
See docs/tenant-model.md.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

TENANT_MODEL = getattr(settings, "HOSTGUARD_TENANT_MODEL", "hostguard.Tenant")
OWN_TENANT = TENANT_MODEL.partition(".")[0] == "hostguard" and TENANT_MODEL.partition(".")[2].lower() == "tenant"


class Migration(migrations.Migration):
    dependencies = [
        ("hostguard", "0006_mismatchlog_sni"),
        # The first migration of the tenant model's app (ignored for hostguard's own).
        migrations.swappable_dependency(TENANT_MODEL),
    ]

    operations = [] if OWN_TENANT else [
        migrations.AddField(
            model_name="authority",
            name="tenant",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="authorities",
                to=TENANT_MODEL,
                verbose_name="tenant",
            ),
        ),
        migrations.AddField(
            model_name="mismatchlog",
            name="tenant",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="mismatches",
                to=TENANT_MODEL,
                verbose_name="tenant",
            ),
        ),
    ]
