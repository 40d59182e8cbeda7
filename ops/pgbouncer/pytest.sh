#!/usr/bin/env bash
# The flows that matter most, run through PgBouncer in transaction pooling
# (docs/deployment.md, "Behind PgBouncer"): ingest, planning, delivery with its SKIP LOCKED claim,
# the purge, webhook intake, the calendar sync lock and the row-level-security tests as the app
# role. `make pytest-pgbouncer` runs it; .ci/run runs that after `make test`.
#
# Needs DATABASE_URL: the Postgres server to pool (its own database is not touched). Starts its own
# PgBouncer (ops/pgbouncer/start.sh) on PGBOUNCER_PORT (default: 6432, or a free port when 6432 is
# taken), runs the modules with DATABASE_URL pointing at it and DATABASE_POOLER set, and fails when
# a test fails or leaves state on a server connection (tests/pgbouncer_probe.py). The test
# database (test_<db>_pgb) is created through the pooler and dropped directly at the end.
# Arguments go to pytest: options (in --name=value form) are added; a test path replaces the list.
set -euo pipefail
cd "$(dirname "$0")/../.."

MODULES=(
  tests/test_ingest.py
  tests/test_ingest_command.py
  tests/test_reconcile_writes.py
  tests/test_reconcile_drills.py
  tests/test_newcomer_flows.py
  tests/test_retention_purge.py
  tests/test_webhooks.py
  tests/test_calendar_sync.py
  tests/test_tenancy.py
)
# This test runs SET ROLE in autocommit and expects the next transactions to share its session:
# true of a direct connection only. Behind the pooler its other transactions run as the login
# role. (That scope settings do not outlive their transaction is checked after every test here.)
SKIP=(--deselect tests/test_tenancy.py::test_scope_does_not_leak_to_the_next_transaction)
PY=.venv/bin/python
: "${DATABASE_URL:?DATABASE_URL must name the Postgres server the pooled run goes through}"

# host, port, user and database of DATABASE_URL; a free port for the pooler
read -r host port user db pooler_port < <(
  "$PY" - "${PGBOUNCER_PORT:-}" <<'EOF'
import os, socket, sys
from urllib.parse import urlsplit

url = urlsplit(os.environ["DATABASE_URL"])
if url.scheme not in ("postgres", "postgresql"):
    sys.exit("ops/pgbouncer/pytest.sh: DATABASE_URL must be a postgres:// URL")

def free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as PgBouncer binds: TIME_WAIT is fine
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True

wanted = int(sys.argv[1]) if sys.argv[1] else 6432
if not free(wanted):
    if sys.argv[1]:
        sys.exit(f"ops/pgbouncer/pytest.sh: PGBOUNCER_PORT {wanted} is taken")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        wanted = s.getsockname()[1]
print(url.hostname or "127.0.0.1", url.port or 5432, url.username or "postgres", url.path.lstrip("/"), wanted)
EOF
)
pooled_db="${db}_pgb"
dir=$(mktemp -d)
drop_test_db() {
  PGOPTIONS="-c client_min_messages=warning" psql -q -h "$host" -p "$port" -U "$user" -d postgres \
    -c "DROP DATABASE IF EXISTS \"test_$pooled_db\" WITH (FORCE)" >/dev/null
}
stop() {
  if [ -f "$dir/pgbouncer.pid" ]; then kill "$(cat "$dir/pgbouncer.pid")" 2>/dev/null || true; fi
  for _ in $(seq 1 30); do [ -f "$dir/pgbouncer.pid" ] || break; sleep 0.1; done
  drop_test_db || true
  rm -rf "$dir"
}
trap stop EXIT

drop_test_db
bash ops/pgbouncer/start.sh "$dir" "$pooler_port" "$host:$port" "$user"
echo "pgbouncer (transaction pooling) on 127.0.0.1:$pooler_port in front of $host:$port"
started=$SECONDS
# --reuse-db: the test database is created through the pooler, but dropped directly (above),
# since PgBouncer keeps server connections to it open.
paths=""
for arg in "$@"; do [[ $arg == -* ]] || paths=1; done
[ -n "$paths" ] || set -- "$@" "${SKIP[@]}" "${MODULES[@]}"
DATABASE_URL="postgres://$user@127.0.0.1:$pooler_port/$pooled_db" DATABASE_POOLER=pgbouncer-transaction \
  PYTHONPATH=. .venv/bin/pytest -p tests.pgbouncer_probe --no-cov --reuse-db -q "$@"
echo "pooled run: $((SECONDS - started)) s"
