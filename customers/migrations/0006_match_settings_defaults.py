"""Default matcher thresholds per kind, and who may change them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def forwards(apps, schema_editor):
    MatchSettings = apps.get_model("customers", "MatchSettings")
    for kind in ("person", "organization"):
        MatchSettings.objects.get_or_create(kind=kind)
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    perms = Permission.objects.filter(
        content_type__app_label="customers",
        codename__in=["view_matchsettings", "change_matchsettings", "view_trainedmodel"],
    )
    for name in ("steward", "admin"):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*perms)
    Group.objects.get(name="admin").permissions.add(
        *Permission.objects.filter(content_type__app_label="customers")
    )


class Migration(migrations.Migration):
    dependencies = [("customers", "0005_matcher"), ("customers", "0004_stewardship_permissions")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
