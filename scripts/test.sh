#!/usr/bin/env bash
# Install openvisit with its test tools into .venv, make sure PostgreSQL and Redis answer on
# 127.0.0.1, then run the linters, the type checker and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
ensure_venv test

port_open() { .venv/bin/python -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 2)" "$1" 2>/dev/null; }

if ! port_open 5432; then
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi
if ! port_open 6379 && command -v redis-server >/dev/null; then
  echo "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no || true
fi
for _ in $(seq 1 30); do port_open 5432 && break; sleep 1; done

# Browser end-to-end tests use Debian's Chromium (Playwright never downloads a browser here).
if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing chromium with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# The TURN tests (tests/test_turn_relay.py) build NATs in network namespaces (nftables) around
# Debian's coturn; the relay itself is not started as a service.
if { ! command -v turnserver >/dev/null || ! command -v nft >/dev/null; } && [ "$(id -u)" = 0 ] \
    && command -v apt-get >/dev/null; then
  echo "installing coturn and nftables with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq coturn nftables >/dev/null
fi

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
# Two workers, a file each at a time (each worker has its own PostgreSQL database and temp dirs);
# OPENVISIT_TEST_WORKERS=0 runs everything in one process.
echo "== pytest"; .venv/bin/pytest -q -p no:cacheprovider -n "${OPENVISIT_TEST_WORKERS:-2}" --dist loadfile \
  --durations=15 "$@"
