"""Erase one user's verification data: decisions and raw webhook deliveries.

    manage.py didit_erase_user alice
    manage.py didit_erase_user 42 --by pk
    manage.py didit_erase_user alice --delete-sessions --no-input

By default the user's sessions and status history are kept (status only, no
identity data); ``--delete-sessions`` removes them too. The decision-access
audit log is always kept. Run it before deleting the user's account.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...retention import erase_user


class Command(BaseCommand):
    help = (
        "Erase a user's Didit verification data (decisions and raw webhook deliveries of "
        "their sessions) and print what was removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("user", help="The user's username or primary key.")
        parser.add_argument(
            "--by",
            choices=["auto", "username", "pk"],
            default="auto",
            help="How to read USER (default: a username, else a primary key).",
        )
        parser.add_argument(
            "--delete-sessions",
            action="store_true",
            help="Also delete the user's sessions and their status history.",
        )
        parser.add_argument("--dry-run", action="store_true", help="Report; change nothing.")
        parser.add_argument(
            "--no-input",
            "--noinput",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation.",
        )

    def find_user(self, identifier: str, by: str):
        user_model = get_user_model()
        manager = user_model._default_manager
        by_username = by_pk = None
        if by in {"auto", "username"}:
            by_username = manager.filter(**{user_model.USERNAME_FIELD: identifier}).first()
        if by in {"auto", "pk"}:
            try:
                pk = user_model._meta.pk.to_python(identifier)
                by_pk = manager.filter(pk=pk).first()
            except (ValidationError, ValueError, TypeError, OverflowError):
                by_pk = None
        if by_username and by_pk and by_username.pk != by_pk.pk:
            raise CommandError(
                f"{identifier!r} is one user's username and another user's primary key; "
                "say which with --by username or --by pk."
            )
        user = by_username or by_pk
        if user is None:
            raise CommandError(
                f"No user with {'username or pk' if by == 'auto' else by} {identifier!r}."
            )
        return user

    def handle(
        self,
        *args,
        user: str,
        by: str,
        delete_sessions: bool,
        dry_run: bool,
        interactive: bool,
        **options,
    ) -> None:
        target = self.find_user(user, by)
        label = f"{target.get_username()} (pk={target.pk})"
        if interactive and not dry_run:
            what = "decisions, webhook deliveries" + (
                ", sessions and status history" if delete_sessions else ""
            )
            answer = input(
                f"Erase the verification {what} of {label}? This cannot be undone. "
                "Type 'yes' to continue: "
            )
            if answer.strip().lower() != "yes":
                raise CommandError("Erasure cancelled.")
        report = erase_user(target, delete_sessions=delete_sessions, dry_run=dry_run)
        prefix = "Dry run, nothing changed. " if dry_run else ""
        self.stdout.write(f"{prefix}User {label}: {report.summary()}")
        if report.session_ids:
            self.stdout.write("Sessions: " + ", ".join(report.session_ids))
