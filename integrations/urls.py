from django.urls import path

from . import views

app_name = "integrations"

urlpatterns = [
    path("hooks/<slug:system>/", views.webhook, name="webhook"),
    path("integrations/systems/", views.systems, name="systems"),
    path("integrations/systems/new/", views.system_new, name="system_new"),
    path("integrations/systems/<int:pk>/edit/", views.system_edit, name="system_edit"),
    path("integrations/systems/<int:pk>/check/", views.system_check, name="system_check"),
    path("integrations/systems/<int:pk>/sync/", views.system_sync, name="system_sync"),
    path("integrations/health/", views.sync_health, name="health"),
    path("integrations/dead-letters/", views.dead_letters, name="dead_letters"),
    path(
        "integrations/dead-letters/replay/",
        views.dead_letters_replay,
        name="dead_letters_replay",
    ),
    path("integrations/dead-letters/outbox/retry/", views.outbox_retry, name="outbox_retry"),
    path("integrations/records/<int:pk>/", views.record_detail, name="record"),
    path("integrations/records/<int:pk>/replay/", views.record_replay, name="record_replay"),
]
