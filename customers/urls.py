from django.urls import path

from . import stewardship_views, views

app_name = "customers"

urlpatterns = [
    path("", views.customer_list, name="list"),
    path("<int:pk>/", views.customer_detail, name="detail"),
    path("<int:pk>/contacts/", views.customer_contacts, name="contacts"),
    path("<int:pk>/deals/", views.customer_deals, name="deals"),
    path("<int:pk>/orders/", views.customer_orders, name="orders"),
    path("<int:pk>/invoices/", views.customer_invoices, name="invoices"),
    path("<int:pk>/payments/", views.customer_payments, name="payments"),
    path("<int:pk>/tickets/", views.customer_tickets, name="tickets"),
    path("<int:pk>/timeline/", views.customer_timeline, name="timeline"),
    path("<int:pk>/sources/", views.customer_sources, name="sources"),
    # Stewardship: the duplicates queue, side-by-side merges, undo, the ownership matrix.
    path("<int:pk>/merge-history/", stewardship_views.customer_merges, name="merge_history"),
    path("duplicates/", stewardship_views.duplicates, name="duplicates"),
    path(
        "duplicates/bulk-approve/",
        stewardship_views.duplicates_bulk_approve,
        name="duplicates_bulk_approve",
    ),
    path("duplicates/<int:pk>/", stewardship_views.candidate_detail, name="candidate"),
    path(
        "duplicates/<int:pk>/preview/",
        stewardship_views.candidate_preview,
        name="candidate_preview",
    ),
    path(
        "duplicates/<int:pk>/decide/",
        stewardship_views.candidate_decision,
        name="candidate_decide",
    ),
    path("merge/", stewardship_views.pair_detail, name="merge"),
    path("merge/preview/", stewardship_views.pair_preview, name="merge_preview"),
    path("merge/decide/", stewardship_views.pair_decision, name="merge_decide"),
    path("merges/<int:pk>/undo/", stewardship_views.merge_undo, name="merge_undo"),
    path("ownership/", stewardship_views.ownership, name="ownership"),
    path("ownership/new/", stewardship_views.ownership_add, name="ownership_add"),
    path("ownership/<int:pk>/", stewardship_views.ownership_cell, name="ownership_cell"),
    path("ownership/<int:pk>/edit/", stewardship_views.ownership_edit, name="ownership_edit"),
    path(
        "ownership/<int:pk>/history/",
        stewardship_views.ownership_history,
        name="ownership_history",
    ),
    # The matcher's thresholds per kind, and the suggestions learned from the decisions.
    path("match-settings/", stewardship_views.match_settings, name="match_settings"),
    path(
        "match-settings/<str:kind>/",
        stewardship_views.match_settings_save,
        name="match_settings_save",
    ),
    path(
        "match-settings/<str:kind>/apply/",
        stewardship_views.match_settings_apply,
        name="match_settings_apply",
    ),
]
