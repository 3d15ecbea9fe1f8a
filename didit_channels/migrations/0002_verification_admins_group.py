"""Create the "Verification admins" group holding view_all_sessions.

Permissions are normally created after migrate (post_migrate), so this
migration creates the one it needs itself; post_migrate then finds it.
"""

from django.db import migrations

GROUP_NAME = "Verification admins"


def create_group(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    content_type, _ = ContentType.objects.get_or_create(
        app_label="didit_channels", model="verificationsession"
    )
    permission, _ = Permission.objects.get_or_create(
        content_type=content_type,
        codename="view_all_sessions",
        defaults={"name": "Can watch every verification session live"},
    )
    group, _ = Group.objects.get_or_create(name=GROUP_NAME)
    group.permissions.add(permission)


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=GROUP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("didit_channels", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_group, remove_group)]
