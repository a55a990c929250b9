from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations (the pipes)"

    def ready(self) -> None:
        # Merges happen in customers, which may not import integrations: it calls the
        # listeners registered here, inside the merge transaction (transactional outbox).
        from customers.services.merge import MERGE_LISTENERS

        from .outbox import merge_event_write

        if merge_event_write not in MERGE_LISTENERS:
            MERGE_LISTENERS.append(merge_event_write)
