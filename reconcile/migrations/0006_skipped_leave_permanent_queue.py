"""A skipped write leaves the permanent-failure queue (issue 20): writes skipped before Skip
cleared `permanent_failure` get it cleared too, so "Permanent failure: Yes" can empty. Their
`crm_write_skipped` audit rows still say they were permanent. Under forced row-level security
the update runs in system scope."""

from typing import Any

from django.db import migrations

from conduit.tenancy import system_scope


def clear_permanent_on_skipped(apps: Any, schema_editor: Any) -> None:
    writes = apps.get_model("reconcile", "CrmWriteLog")
    with system_scope():
        writes.objects.filter(status="skipped", permanent_failure=True).update(permanent_failure=False)


class Migration(migrations.Migration):
    dependencies = [("reconcile", "0005_model_names")]

    operations = [migrations.RunPython(clear_permanent_on_skipped, migrations.RunPython.noop)]
