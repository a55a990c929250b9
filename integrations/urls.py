from django.urls import path

from . import views

app_name = "integrations"

urlpatterns = [
    path("hooks/<slug:system>/", views.webhook, name="webhook"),
]
