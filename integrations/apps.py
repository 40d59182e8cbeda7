from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "integrations"

    def ready(self) -> None:
        from django.conf import settings

        from conduit.pruning import register_pruner
        from conduit.secrets_scan import register_secret
        from integrations.providers.synclog_pruning import SyncLogPruner

        # logs and audit payloads never show the OAuth client secrets, in any form
        register_secret(settings.HUBSPOT_CLIENT_SECRET)
        register_secret(settings.SALESFORCE_CLIENT_SECRET)
        register_secret(settings.ZOHO_CLIENT_SECRET)
        # the retention purge ages out crm_sync_logs through this app's own statements
        register_pruner("sync_logs", SyncLogPruner())
