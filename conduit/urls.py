from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from conduit import api, health, views
from integrations import api as integration_api
from integrations import views as integration_views
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
    path("settings/integrations/", integration_views.integrations_page, name="integrations"),
    path("settings/integrations/<str:crm>/connect/", integration_views.connect, name="integrations-connect"),
    path(
        "settings/integrations/<str:crm>/disconnect/",
        integration_views.disconnect,
        name="integrations-disconnect",
    ),
    path("settings/integrations/<str:crm>/check/", integration_views.check_now, name="integrations-check"),
    path("settings/integrations/<str:crm>/go-live/", integration_views.go_live, name="integrations-go-live"),
    path(
        "settings/integrations/<str:crm>/dry-run/",
        integration_views.back_to_dry_run,
        name="integrations-dry-run",
    ),
    path("integrations/install/<str:crm>/", integration_views.install, name="integrations-install"),
    path("integrations/oauth/callback/<str:crm>/", integration_views.callback, name="oauth-callback"),
    path(
        "integrations/oauth/confirm/<int:state_id>/", integration_views.confirm_replace, name="oauth-confirm"
    ),
    path("claim-install", integration_views.claim_install, name="claim-install"),
    path("settings/retention/", views.retention_page, name="retention"),
    path("messages/", views.message_list, name="message-list"),
    path("messages/<int:pk>/", views.message_detail, name="message-detail"),
    path("attachments/<int:pk>/", views.attachment_download, name="attachment-download"),
    path("api/v1/messages", api.MessageIngestView.as_view(), name="api-messages"),
    path("api/v1/claim-install", integration_api.ClaimInstallView.as_view(), name="api-claim-install"),
    path(
        "api/v1/integrations/<str:provider>/refresh",
        integration_api.RefreshTokenView.as_view(),
        name="api-integration-refresh",
    ),
    path(
        "api/v1/integrations/<str:provider>/disconnect",
        integration_api.DisconnectView.as_view(),
        name="api-integration-disconnect",
    ),
    path("api/v1/admin/pause-sync", integration_api.PauseSyncView.as_view(), name="api-pause-sync"),
    path("webhooks/", include("integrations.webhooks.urls")),
    path("admin/", admin.site.urls),
]
