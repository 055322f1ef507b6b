#!/usr/bin/env bash
# Install openvisit into .venv and start it with embedded defaults: SQLite, local folders,
# a demo facility with demo accounts, and the movable test clock. Prints the URL.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/bootstrap.sh
ensure_venv ""
exec .venv/bin/openvisit serve --demo "$@"
