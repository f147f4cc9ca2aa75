#!/usr/bin/env bash
# Create .venv and install streamad into it (idempotent; fast when nothing changed).
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh test
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "streamad needs Python >= 3.10")'
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=".venv/.streamad-installed${extras:+-$extras}"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  # pip's notes about unreachable local package indexes are noise here.
  quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
  quiet .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # torch is pinned here: an unpinned torch pulls a multi-GB CUDA build.
  quiet .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0" -e ".${extras:+[$extras]}"
  echo "$want" > "$stamp"
fi
