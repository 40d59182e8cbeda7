from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "integrations"
    verbose_name = "CRM integrations"

    def ready(self) -> None:
        from django.conf import settings

        from conduit.install_notice import register_install_describer
        from conduit.operator_role import OperatorGrant, register_grants
        from conduit.pruning import register_pruner
        from conduit.secrets_scan import register_secret
        from integrations.connections.install_notice import PendingInstallDescriber
        from integrations.providers import metrics_host  # noqa: F401 - connects the worker's signals
        from integrations.providers.synclog_pruning import SyncLogPruner

        # logs and audit payloads never show the OAuth client secrets, in any form
        register_secret(settings.HUBSPOT_CLIENT_SECRET)
        register_secret(settings.SALESFORCE_CLIENT_SECRET)
        register_secret(settings.ZOHO_CLIENT_SECRET)
        register_secret(settings.GOOGLE_CLIENT_SECRET)
        register_secret(settings.MICROSOFT_CLIENT_SECRET)
        # the retention purge ages out crm_sync_logs through this app's own statements
        register_pruner("sync_logs", SyncLogPruner())
        # the sign-in and sign-up pages name an install waiting to be claimed (conduit.install_notice)
        register_install_describer(PendingInstallDescriber())
        # what runbook SQL may read and update as the operator role: never a token, a state or
        # an install id; runbook 003's cursor reset is the one UPDATE
        register_grants(
            [
                OperatorGrant("integrations"),
                OperatorGrant("crm_connections", hidden=("access_token", "refresh_token")),
                OperatorGrant("oauth_states", hidden=("state_hash", "code_verifier", "pending_tokens")),
                OperatorGrant("pending_installs", hidden=("install_id",)),
                OperatorGrant("crm_sync_logs"),
                OperatorGrant("crm_sync_pauses"),
                OperatorGrant("connection_health"),
                OperatorGrant("workspace_integrations"),
                OperatorGrant("webhook_events"),
                OperatorGrant("crm_sync_cursors", update=("since_ts",)),
                # runbook 004: backoff set / cleared, sync state reset, failed events re-queued
                OperatorGrant(
                    "external_calendar_connections",
                    hidden=("access_token", "refresh_token", "channel_secret"),
                    update=("backoff_until", "sync_cursor", "last_synced_at", "error_count", "last_error"),
                ),
                OperatorGrant("external_calendar_events", update=("sync_status", "last_error")),
            ]
        )
