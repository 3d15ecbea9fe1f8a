from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

DEMO_ACCOUNTS = [
    # username, password, superuser
    ("admin", "admin", True),
    ("alice", "alice", False),
    ("bob", "bob", False),
]


class Command(BaseCommand):
    help = (
        "Create the demo accounts admin/admin (superuser, admin audience), alice/alice and "
        "bob/bob. Development only: refuses to run with DEBUG off unless --force."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--force", action="store_true", help="Run even with DEBUG off (never in production)."
        )

    def handle(self, *args, force=False, **options):
        if not settings.DEBUG and not force:
            raise CommandError(
                "didit_seed_demo creates accounts with well-known passwords; it runs only with "
                "DEBUG on (or --force)."
            )
        user_model = get_user_model()
        admins = Group.objects.filter(name="Verification admins").first()
        for username, password, superuser in DEMO_ACCOUNTS:
            user, created = user_model._default_manager.get_or_create(
                username=username,
                defaults={"is_staff": superuser, "is_superuser": superuser, "is_active": True},
            )
            user.set_password(password)
            user.is_active = True
            user.save()
            if superuser and admins is not None:
                user.groups.add(admins)
            verb = "created" if created else "reset"
            self.stdout.write(f"{verb} {username}/{password}{' (superuser)' if superuser else ''}")
