from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "integrations"

    def ready(self) -> None:
        from django.conf import settings

        from conduit.secrets_scan import register_secret

        # logs and audit payloads never show the OAuth client secrets, in any form
        register_secret(settings.HUBSPOT_CLIENT_SECRET)
        register_secret(settings.SALESFORCE_CLIENT_SECRET)
