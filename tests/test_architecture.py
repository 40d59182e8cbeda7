"""The house rules hold and bite: the import-linter contracts in pyproject.toml pass on the tree,
a planted violation of each kind fails them, and every room says what it owns."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone

ROOT = Path(__file__).resolve().parent.parent
APPS = ("conduit", "integrations", "reconcile", "retention")
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")
CONTRACTS = (
    "Apps depend one way: reconcile -> integrations -> conduit, retention -> conduit",
    "Retention uses only the core",
    "Rooms of integrations: higher rooms use lower ones, never the reverse",
    "The models and the write-ledger port sit below every room",
    "Only the run_sandbox command imports the sandbox (tests and bench aside)",
    "The sandbox imports no other part of Conduit",
    "No import cycles, at any depth",
)
ROOMS = (
    "api",
    "calendars",
    "connections",
    "console",
    "cursors",
    "health",
    "pages",
    "providers",
    "sandbox",
    "webhooks",
)


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_contract_of_the_house_holds_on_the_tree() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in result.stdout, name
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in result.stdout


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("house")
    for app in APPS:
        shutil.copytree(ROOT / app, base / app, ignore=shutil.ignore_patterns("__pycache__", "migrations"))
    shutil.copy(ROOT / "pyproject.toml", base / "pyproject.toml")
    return base


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("integrations/pages/views.py", "from reconcile import services", CONTRACTS[0]),
        ("conduit/views.py", "from retention import policy", CONTRACTS[0]),
        ("retention/purge.py", "from integrations import models", CONTRACTS[1]),
        ("integrations/providers/errors.py", "from integrations.connections import tokens", CONTRACTS[2]),
        ("integrations/webhooks/effects.py", "from integrations.cursors import apply", CONTRACTS[2]),
        ("integrations/ledger.py", "from integrations.providers import base", CONTRACTS[3]),
        ("reconcile/delivery.py", "from integrations.sandbox import server", CONTRACTS[4]),
        ("integrations/sandbox/oauth.py", "from integrations.providers import errors", CONTRACTS[5]),
        # a cycle hidden in a function still counts
        (
            "integrations/health/checks.py",
            "def _later():\n    from integrations.health import tasks",
            CONTRACTS[6],
        ),
        ("reconcile/delivery.py", "def later():\n    from reconcile import queue", CONTRACTS[6]),
    ],
)
def test_a_planted_violation_breaks_its_contract(
    tree_copy: Path, module: str, line: str, broken: str
) -> None:
    path = tree_copy / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{line}  # noqa\n")
        result = lint_imports(tree_copy)
    finally:
        path.write_text(original)
    assert result.returncode == 1, result.stdout
    assert f"{broken} BROKEN" in result.stdout


@pytest.mark.parametrize("room", ROOMS)
def test_every_room_of_integrations_says_what_it_owns(room: str) -> None:
    init = ROOT / "integrations" / room / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc and len(doc.split()) >= 25, (
        f"integrations/{room}/__init__.py needs a docstring of what it owns"
    )


def test_every_room_is_a_package_and_no_flat_modules_are_left_beside_them() -> None:
    top = sorted(p.name for p in (ROOT / "integrations").glob("*.py"))
    assert top == ["__init__.py", "admin.py", "apps.py", "ledger.py", "models.py", "tasks.py"]
    rooms = sorted(p.parent.name for p in (ROOT / "integrations").glob("*/__init__.py"))
    assert rooms == sorted([*ROOMS, "management", "migrations"])


def test_reconcile_serves_integrations_as_its_write_ledger() -> None:
    from integrations import ledger
    from reconcile.ledger import ReconcileLedger

    assert isinstance(ledger.ledger(), ReconcileLedger)


def test_without_a_registered_ledger_integrations_says_what_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from integrations import ledger

    monkeypatch.setattr(ledger, "_registered", [])
    with pytest.raises(ledger.NoLedger, match="is the reconcile app in INSTALLED_APPS"):
        ledger.ledger()


def test_integrations_prunes_its_own_sync_logs_for_the_retention_purge() -> None:
    from conduit.pruning import NothingToPrune, pruner
    from integrations.providers.synclog_pruning import SyncLogPruner

    assert isinstance(pruner("sync_logs"), SyncLogPruner)
    assert isinstance(pruner("never_registered"), NothingToPrune)
    assert pruner("never_registered").delete_batch(1, timezone.now(), 10, None) == (0, None)


@pytest.mark.parametrize("app", ["conduit", "retention"])
def test_no_app_writes_the_tables_of_an_app_above_it(app: str) -> None:
    """The import contracts cannot see raw SQL: the core and retention name no table of
    integrations or reconcile (crm_*, webhook_events, workspace_integrations, connection_health)."""
    foreign = re.compile(r"\b(crm_[a-z_]+|webhook_events|workspace_integrations|connection_health)\b")
    for path in (ROOT / app).rglob("*.py"):
        if "migrations" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and " " in node.value:
                sql = node.value.upper()
                if any(verb in sql for verb in ("SELECT ", "UPDATE ", "DELETE ", "INSERT ")):
                    assert not foreign.search(node.value), f"{path.relative_to(ROOT)}: {node.value[:80]}"


def test_no_bench_script_shadows_a_standard_module() -> None:
    """A bench runs as `python bench/x.py`, which puts bench/ first on sys.path: a bench named
    like a standard module (calendar.py, say) would be imported in its place by the others."""
    names = {path.stem for path in (ROOT / "bench").glob("*.py")}
    assert not names & set(sys.stdlib_module_names)
