from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from conduit import api, api_schema, health, member_views, views
from conduit.auth_views import SignInView
from integrations.api import connections as integration_api
from integrations.api import operators as api_admin
from integrations.api import playbook
from integrations.api import status as api_status
from integrations.pages import views as integration_views
from integrations.providers.metrics import metrics_view
from reconcile import api as reconcile_api
from reconcile import customer_writes
from reconcile import views as reconcile_views
from retention import views as retention_views

assert api_schema  # registers the token schemes with the schema generator

handler400 = "conduit.error_pages.bad_request"
handler403 = "conduit.error_pages.permission_denied"
handler404 = "conduit.error_pages.not_found"
handler500 = "conduit.error_pages.server_error"

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("metrics", metrics_view, name="metrics"),
    path("accounts/login/", SignInView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("settings/", views.settings_home, name="settings-home"),
    path("settings/tokens/", views.create_api_token, name="api-token-create"),
    path("settings/tokens/<int:token_id>/revoke/", views.revoke_api_token, name="api-token-revoke"),
    path("settings/operator-tokens/", views.create_staff_token, name="staff-token-create"),
    path(
        "settings/operator-tokens/<int:token_id>/revoke/", views.revoke_staff_token, name="staff-token-revoke"
    ),
    path("settings/workspace/", views.switch_workspace, name="switch-workspace"),
    path("settings/members/", member_views.members_page, name="members"),
    path("settings/members/invite/", member_views.invite, name="member-invite"),
    path(
        "settings/members/invitations/<int:invitation_id>/revoke/",
        member_views.revoke_invitation,
        name="invitation-revoke",
    ),
    path("settings/members/<int:membership_id>/role/", member_views.change_role, name="member-role"),
    path("settings/members/<int:membership_id>/remove/", member_views.remove_member, name="member-remove"),
    path("invite/", member_views.invitation, name="invitation"),
    path("settings/integrations/", integration_views.integrations_page, name="integrations"),
    path(
        "settings/integrations/odoo/credentials/",
        integration_views.odoo_credentials,
        name="integrations-odoo-credentials",
    ),
    *(
        path(
            f"settings/integrations/{ats}/credentials/",
            integration_views.ats_credentials,
            {"crm": ats},
            name=f"integrations-{ats}-credentials",
        )
        for ats in ("greenhouse", "lever", "workday")
    ),
    path("settings/integrations/pause/", integration_views.pause_sync, name="integrations-pause"),
    path("settings/integrations/resume/", integration_views.resume_sync, name="integrations-resume"),
    path(
        "settings/integrations/write-settings/",
        reconcile_views.write_settings,
        name="integrations-write-settings",
    ),
    path("settings/integrations/<str:crm>/connect/", integration_views.connect, name="integrations-connect"),
    path(
        "settings/integrations/<str:crm>/disconnect/",
        integration_views.disconnect,
        name="integrations-disconnect",
    ),
    path("settings/integrations/<str:crm>/check/", integration_views.check_now, name="integrations-check"),
    path("settings/integrations/<str:crm>/go-live/", reconcile_views.go_live, name="integrations-go-live"),
    path(
        "settings/integrations/<str:crm>/dry-run/",
        reconcile_views.back_to_dry_run,
        name="integrations-dry-run",
    ),
    path("settings/integrations/<str:crm>/writes/", customer_writes.writes_page, name="integrations-writes"),
    path(
        "settings/integrations/<str:crm>/writes/<int:write_id>/retry/",
        customer_writes.retry_write,
        name="integrations-write-retry",
    ),
    path(
        "settings/integrations/<str:crm>/writes/<int:write_id>/skip/",
        customer_writes.skip_write,
        name="integrations-write-skip",
    ),
    path("integrations/install/<str:crm>/", integration_views.install, name="integrations-install"),
    path("integrations/oauth/callback/<str:crm>/", integration_views.callback, name="oauth-callback"),
    path(
        "integrations/oauth/confirm/<int:state_id>/", integration_views.confirm_replace, name="oauth-confirm"
    ),
    path("claim-install", integration_views.claim_install, name="claim-install"),
    path("settings/retention/", retention_views.retention_page, name="retention"),
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
    path(
        "api/v1/integrations/status",
        api_status.IntegrationsStatusView.as_view(),
        name="api-integrations-status",
    ),
    path(
        "api/v1/integrations/<str:provider>/status",
        api_status.IntegrationStatusView.as_view(),
        name="api-integration-status",
    ),
    path(
        "api/v1/integrations/<str:provider>/sync-logs",
        api_status.SyncLogListView.as_view(),
        name="api-integration-sync-logs",
    ),
    path(
        "api/v1/integrations/<str:provider>/sync-logs/<int:pk>",
        api_status.SyncLogDetailView.as_view(),
        name="api-integration-sync-log",
    ),
    path(
        "api/v1/integrations/<str:provider>/failures",
        reconcile_api.FailuresView.as_view(),
        name="api-integration-failures",
    ),
    path(
        "api/v1/integrations/<str:provider>/retry-failed",
        reconcile_api.RetryFailedView.as_view(),
        name="api-integration-retry-failed",
    ),
    path(
        "api/v1/admin/tenants/<str:tenant_id>/integrations/<str:provider>",
        api_admin.TenantIntegrationView.as_view(),
        name="api-admin-tenant-integration",
    ),
    path("api/v1/admin/sync-status", api_admin.SyncStatusView.as_view(), name="api-admin-sync-status"),
    path(
        "api/v1/admin/replay-webhook", api_admin.ReplayWebhookView.as_view(), name="api-admin-replay-webhook"
    ),
    path("api/v1/health", api_admin.HealthMatrixView.as_view(), name="api-health"),
    path("api/v1/sync/logs", api_admin.SystemSyncLogsView.as_view(), name="api-sync-logs"),
    path("api/v1/system-metrics/queues", api_admin.QueueMetricsView.as_view(), name="api-queue-metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("webhooks/", include("integrations.webhooks.urls")),
    path("", include("integrations.pages.calendar_urls")),
    path("", include("integrations.api.calendar_urls")),
    path("crm/", include(playbook)),
    path("admin/", admin.site.urls),
]
