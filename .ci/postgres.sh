# Sourced by .ci/run: a throwaway PostgreSQL cluster for the tests, on a loopback port.
#
# start_postgres installs Debian's postgresql when no server is found, runs a new cluster as the
# `postgres` system user (initdb refuses root) in a temporary folder, creates the `spoke_test`
# database, exports SPOKE_TEST_POSTGRES_URL and stops the cluster (and removes it) on exit.
# Run it alone with:  bash -c '. .ci/postgres.sh && start_postgres && psql "${SPOKE_TEST_POSTGRES_URL/+psycopg/}" -c "select 1"'

_pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

_pg_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
    2>/dev/null || echo 55432
}

start_postgres() {
  if [ -z "$(_pg_bindir)" ]; then
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq || true) && apt-get install -y -qq postgresql >/dev/null
  fi
  # The package may start its own cluster; the tests use theirs.
  (pg_ctlcluster --force "$(basename "$(dirname "$(_pg_bindir)")")" main stop || true) >/dev/null 2>&1
  local bin dir port password
  bin="$(_pg_bindir)"
  dir="$(mktemp -d /tmp/spoke-pg.XXXXXX)"
  port="$(_pg_free_port)"
  password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  printf '%s\n' "$password" >"$dir/pwfile"
  chmod 600 "$dir/pwfile"
  chown -R postgres: "$dir"
  # Superuser `spoke` (the tests create a database per test) with a password, on loopback only.
  runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U spoke --pwfile="$dir/pwfile" \
    --auth-host=scram-sha-256 --auth-local=peer -E UTF8 --no-instructions >"$dir/initdb.log"
  rm -f "$dir/pwfile"
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off" start \
    >/dev/null
  _SPOKE_PG_STOP="runuser -u postgres -- $bin/pg_ctl -D $dir/data -m immediate stop; rm -rf $dir"
  trap 'eval "$_SPOKE_PG_STOP" >/dev/null 2>&1' EXIT
  PGPASSWORD="$password" "$bin/createdb" -h 127.0.0.1 -p "$port" -U spoke spoke_test
  export SPOKE_TEST_POSTGRES_URL="postgresql+psycopg://spoke:${password}@127.0.0.1:${port}/spoke_test"
  echo "PostgreSQL $("$bin/postgres" -V | awk '{print $3}') for the tests on 127.0.0.1:$port"
}
