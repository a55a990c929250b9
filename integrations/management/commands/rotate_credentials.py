"""python manage.py rotate_credentials"""

from django.core.management.base import BaseCommand
from django.db import transaction

from integrations.connections import credentials_rotate


class Command(BaseCommand):
    help = "Re-encrypt stored credentials with the first key of CONCORD_ENCRYPTION_KEYS."

    def handle(self, *args, **opts):
        with transaction.atomic():
            count = credentials_rotate()
        self.stdout.write(f"Re-encrypted the credentials of {count} connections.")
