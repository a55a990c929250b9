from django.urls import path

from . import views

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
]
