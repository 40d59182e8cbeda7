from django.apps import AppConfig


class ReconcileConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "reconcile"
    verbose_name = "CRM writes (reconcile)"

    def ready(self) -> None:
        # Wiring at start (the models are loaded only now): reconcile listens to the core's
        # ingest signal and serves integrations as its write ledger.
        from conduit.operator_role import OperatorGrant, register_grants
        from conduit.signals import messages_stored
        from integrations import ledger
        from reconcile.ledger import ReconcileLedger
        from reconcile.planning import on_messages_stored

        messages_stored.connect(on_messages_stored, dispatch_uid="reconcile.plan_on_ingest")
        ledger.register(ReconcileLedger())
        register_grants(
            [
                OperatorGrant("crm_write_log"),
                OperatorGrant("crm_deal_mappings"),
                OperatorGrant("crm_write_policies"),
            ]
        )
