from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from conduit import api, health, views
from integrations.metrics import metrics_view

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("settings/", views.settings_home, name="settings-home"),
    path("settings/tokens/", views.create_api_token, name="api-token-create"),
    path("settings/tokens/<int:token_id>/revoke/", views.revoke_api_token, name="api-token-revoke"),
    path("settings/workspace/", views.switch_workspace, name="switch-workspace"),
    path("settings/integrations/", views.integrations_page, name="integrations"),
    path("settings/retention/", views.retention_page, name="retention"),
    path("messages/", views.message_list, name="message-list"),
    path("messages/<int:pk>/", views.message_detail, name="message-detail"),
    path("attachments/<int:pk>/", views.attachment_download, name="attachment-download"),
    path("api/v1/messages", api.MessageIngestView.as_view(), name="api-messages"),
    path("admin/", admin.site.urls),
]
