from django.apps import AppConfig


class ConduitConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "conduit"
    verbose_name = "Conduit core"

    def ready(self) -> None:
        from conduit.operator_role import CORE_GRANTS, register_grants

        register_grants(CORE_GRANTS)
