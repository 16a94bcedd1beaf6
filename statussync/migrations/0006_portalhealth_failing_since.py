from django.db import migrations, models
from django.db.models import F, Q


def failing_since_from_last_error(apps, schema_editor):
    # A portal whose last error came after its last success is failing now; the first failure of that
    # outage is unknown, so it starts at the last error.
    PortalHealth = apps.get_model("statussync", "PortalHealth")
    PortalHealth.objects.filter(
        Q(last_contact_at__isnull=True) | Q(last_error_at__gt=F("last_contact_at")),
        last_error_at__isnull=False,
    ).update(failing_since=F("last_error_at"))


class Migration(migrations.Migration):
    dependencies = [
        ("statussync", "0005_reasons_as_codes"),
    ]

    operations = [
        migrations.AddField(
            model_name="portalhealth",
            name="failing_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.RunPython(failing_since_from_last_error, migrations.RunPython.noop),
    ]
