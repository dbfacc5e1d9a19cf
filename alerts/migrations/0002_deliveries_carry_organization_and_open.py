"""Each delivery repeats its alert's organization and whether the alert is open, so the
header badge counts a person's unread open alerts from one partial index (no join)."""

import django.db.models.deletion
from django.db import migrations, models


def copy_from_alerts(apps, schema_editor):
    AlertRecipient = apps.get_model("alerts", "AlertRecipient")
    for delivery in AlertRecipient.objects.select_related("alert").iterator():
        delivery.organization_id = delivery.alert.organization_id
        delivery.alert_open = delivery.alert.resolved_at is None
        delivery.save(update_fields=["organization", "alert_open"])


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0001_alerts"),
        ("integrations", "0002_live_version"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="alertrecipient", name="alert_unread_by_user"),
        migrations.AddField(
            model_name="alertrecipient",
            name="alert_open",
            field=models.BooleanField(default=True),
        ),
        migrations.AddField(
            model_name="alertrecipient",
            name="organization",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="integrations.organization",
            ),
        ),
        migrations.RunPython(copy_from_alerts, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="alertrecipient",
            name="organization",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="integrations.organization",
            ),
        ),
        migrations.AddIndex(
            model_name="alertrecipient",
            index=models.Index(
                condition=models.Q(
                    ("alert_open", True), ("dismissed_at__isnull", True), ("read_at__isnull", True)
                ),
                fields=["user", "organization"],
                name="alert_unread_open_by_user",
            ),
        ),
    ]
