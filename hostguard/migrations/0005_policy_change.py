import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("hostguard", "0004_hostcheck_index_link"),
    ]

    operations = [
        migrations.AddField(
            model_name="policystamp",
            name="pruned_through",
            field=models.BigIntegerField(default=0),
        ),
        migrations.CreateModel(
            name="PolicyChange",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("version", models.BigIntegerField(db_index=True)),
                ("kind", models.CharField(max_length=16)),
                ("object_id", models.BigIntegerField(null=True)),
                ("old_host", models.CharField(blank=True, default="", max_length=255)),
                ("created_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
            ],
            options={
                "verbose_name": "policy change",
                "default_permissions": (),
            },
        ),
    ]
