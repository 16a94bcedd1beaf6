"""The groups "Sync managers" and "Support" with their permissions (statussync/roles.py says who gets what)."""

from django.db import migrations


def roles_create(apps, schema_editor):
    # Permissions are normally created after all migrations (post_migrate); create them now so the groups
    # can be given them on a fresh database.
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None

    from statussync.roles import roles_ensure

    roles_ensure(apps=apps, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("statussync", "0009_catalog_and_mapping_changes"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(roles_create, migrations.RunPython.noop)]
