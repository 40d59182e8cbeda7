#!/usr/bin/env bash
# Start a PgBouncer in transaction pooling for the tests (ops/pgbouncer/pytest.sh, which .ci/run
# runs, and tests/test_pgbouncer_safety.py): Debian's pgbouncer, with its own config, auth file,
# log and pid file in DIR, on 127.0.0.1:PORT, every database forwarded to UPSTREAM (host:port).
# Clients log in without a password as one of USERS (auth_type trust; the upstream decides).
# Stop it with: kill "$(cat DIR/pgbouncer.pid)"
#
#   ops/pgbouncer/start.sh DIR PORT UPSTREAM_HOST:UPSTREAM_PORT USER...
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: $0 DIR PORT UPSTREAM_HOST:UPSTREAM_PORT USER..." >&2
  exit 2
fi
dir=$1 port=$2 upstream=$3
shift 3
bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
if [ ! -x "$bin" ]; then
  echo "pgbouncer is not installed (Debian: apt-get install pgbouncer)" >&2
  exit 1
fi

mkdir -p "$dir"
for user in "$@"; do printf '"%s" ""\n' "$user"; done | sort -u >"$dir/userlist.txt"
# server_round_robin with at least min_pool_size server connections: one client's successive
# transactions go to different server connections, so code that counts on its session (a SET, a
# session advisory lock) fails, instead of finding its state again by luck. server_reset_query is
# not run in transaction pooling (server_reset_query_always = 0), as in production: leaked state
# stays for the next client.
cat >"$dir/pgbouncer.ini" <<EOF
[databases]
* = host=${upstream%:*} port=${upstream##*:}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
admin_users = $(printf '%s,' "$@" | sed 's/,$//')
pool_mode = transaction
default_pool_size = 20
min_pool_size = 3
max_client_conn = 1000
server_round_robin = 1
server_reset_query_always = 0
query_wait_timeout = 30
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
EOF

# PgBouncer refuses to run as root; as root it runs as postgres, which must read and write DIR.
run_as=()
if [ "$(id -u)" = 0 ]; then
  chown -R postgres "$dir"
  run_as=(-u postgres)
fi
"$bin" -d "${run_as[@]}" "$dir/pgbouncer.ini"
for _ in $(seq 1 50); do
  if psql -h 127.0.0.1 -p "$port" -U "$1" -d pgbouncer -Atqc "SHOW VERSION" >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.1
done
echo "pgbouncer did not answer on 127.0.0.1:$port within 5 s; its log:" >&2
tail -20 "$dir/pgbouncer.log" >&2 || true
exit 1
