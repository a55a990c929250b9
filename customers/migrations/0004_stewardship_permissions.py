"""Permissions of the stewardship models for the role groups."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

STEWARD = [
    "view_matchcandidate",
    "change_matchcandidate",
    "view_notduplicate",
    "add_notduplicate",
    "view_mergerecord",
    "add_mergerecord",
    "change_mergerecord",
]


def forwards(apps, schema_editor):
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    admin, _ = Group.objects.get_or_create(name="admin")
    admin.permissions.add(*Permission.objects.filter(content_type__app_label="customers"))
    steward, _ = Group.objects.get_or_create(name="steward")
    steward.permissions.add(
        *Permission.objects.filter(content_type__app_label="customers", codename__in=STEWARD)
    )


class Migration(migrations.Migration):
    dependencies = [("customers", "0003_stewardship")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
