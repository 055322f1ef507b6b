# Sourced by start.sh and test.sh: make .venv with the project installed (extras in $1).
set -euo pipefail

# The SFU's per-packet path is a small C extension (sfu/native/*.c): it needs gcc and Python.h.
# Without them the install still works and the SFU forwards in Python, slower.
ensure_c_toolchain() {
  local headers
  headers=$(.venv/bin/python -c 'import os, sysconfig; print(int(os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))))')
  if command -v gcc >/dev/null && [ "$headers" = 1 ]; then
    return
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing gcc and the Python headers with apt-get (for the SFU's C fast path)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc python3-dev >/dev/null || true
  else
    echo "note: gcc or Python.h missing: the SFU will forward in Python (sudo apt-get install gcc python3-dev)" >&2
  fi
}

ensure_venv() {
  local extras="${1:-}"
  if ! python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "openvisit needs Python 3.11 or newer as python3" >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv 2>/dev/null; then
      rm -rf .venv
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing python3-venv with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv .venv
      else
        echo "python3 -m venv failed: install python3-venv (sudo apt-get install python3-venv)" >&2
        exit 1
      fi
    fi
  fi
  local stamp=".venv/.installed${extras:+-$extras}"
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ -n "$(find sfu/native -newer "$stamp" -print -quit)" ]; then
    ensure_c_toolchain
    .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
    touch "$stamp"
  fi
}
