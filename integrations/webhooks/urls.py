"""Routes under /webhooks/."""

from django.urls import path

from integrations.webhooks import views

urlpatterns = [path("hubspot", views.hubspot, name="webhook-hubspot")]
