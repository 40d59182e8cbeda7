from django.apps import AppConfig


class RetentionConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "retention"
    verbose_name = "Retention"

    def ready(self) -> None:
        from conduit.operator_role import OperatorGrant, register_grants

        register_grants([OperatorGrant("retention_policies")])
