"""manage.py ensure_staff — make sure a staff login exists for the local site."""

from __future__ import annotations

import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create a staff superuser if it does not exist. The password comes from "
        "TRAJSITE_ADMIN_PASSWORD, or is generated and printed once."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default=os.environ.get("TRAJSITE_ADMIN_USER", "admin"))

    def handle(self, *args, **options) -> None:
        users = get_user_model()
        username = options["username"]
        if users.objects.filter(username=username).exists():
            self.stdout.write(f"staff login '{username}' exists (password unchanged)")
            return
        password = os.environ.get("TRAJSITE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        users.objects.create_superuser(username=username, email="", password=password)
        if os.environ.get("TRAJSITE_ADMIN_PASSWORD"):
            self.stdout.write(f"created staff login '{username}' with the password from TRAJSITE_ADMIN_PASSWORD")
        else:
            self.stdout.write(
                self.style.WARNING(
                    f"created staff login '{username}' with password: {password}\n(shown only this once)"
                )
            )
