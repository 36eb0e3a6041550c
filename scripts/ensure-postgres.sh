#!/usr/bin/env bash
# Start the local PostgreSQL cluster if it is installed but not accepting connections.
# Tests that need PostgreSQL skip loudly when none can be started (CI turns that into a
# failure with TICKWORK_REQUIRE_POSTGRES=1).
set -u
host=${PGHOST:-127.0.0.1}
if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$host" -p 5432; then
  exit 0
fi
if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
  for v in $(ls /etc/postgresql); do
    pg_ctlcluster --skip-systemctl-redirect "$v" main start >/dev/null 2>&1 || true
  done
  for _ in $(seq 1 50); do
    pg_isready -q -h "$host" -p 5432 && exit 0
    sleep 0.2
  done
fi
echo "WARNING: no PostgreSQL is running on $host:5432 and none could be started" >&2
exit 0
