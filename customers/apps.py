from django.apps import AppConfig


class CustomersConfig(AppConfig):
    name = "customers"
    verbose_name = "Customers (the hub's truth)"

    def ready(self) -> None:
        from . import audit  # noqa: F401  registers models with django-auditlog
