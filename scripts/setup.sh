#!/usr/bin/env bash
# Create .venv and install streamad into it (idempotent; fast and silent when nothing changed).
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh test
# Each step says what it does on stderr, in short lines: a first install takes a minute
# or more (PyTorch is the big part), and a silent minute looks like a hang.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
PY="${PYTHON:-python3}"
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build.
TORCH_VERSION="2.13.0"
say() { echo "setup: $*" >&2; }
"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "streamad needs Python >= 3.10")'

# pip's own output, boiled down to a few short lines: on a terminal one line that follows
# the package being fetched, elsewhere only the large downloads; then how many packages
# were installed. pip's errors (stderr) pass through, but for its notes about local
# package indexes that are not there.
pip_steps() {
  local tty=0
  [ -t 2 ] && tty=1
  PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore .venv/bin/python -m pip "$@" --disable-pip-version-check --progress-bar off \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) \
  | awk -v tty="$tty" '
      function show(text) { if (tty) { printf "\r\033[K  %s", text > "/dev/stderr"; fflush("/dev/stderr"); shown = 1 } }
      /^(Collecting|Processing|Obtaining) / {
        name = $2; sub(/.*\//, "", name); sub(/[<>=!~;\[].*/, "", name); n++
        if ($1 == "Obtaining") name = "streamad (this checkout)"
        show("fetching " name " (" n ")"); next
      }
      /^ *Downloading / && /[0-9.]+ (MB|GB)\)$/ {
        file = $2; sub(/.*\//, "", file); size = $(NF - 1) " " $NF; gsub(/[()]/, "", size)
        if (tty) show("downloading " file " (" size ")")
        else { print "  downloading " file " (" size ")" > "/dev/stderr"; fflush("/dev/stderr") }
        next
      }
      /^Successfully installed / {
        if (shown) printf "\r\033[K" > "/dev/stderr"
        shown = 0
        printf "  installed %d package%s\n", NF - 2, (NF == 3 ? "" : "s") > "/dev/stderr"; fflush("/dev/stderr"); next
      }
      END { if (shown) printf "\r\033[K" > "/dev/stderr" }
    '
}

if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv ($("$PY" -c 'import sys; print("Python %d.%d.%d" % sys.version_info[:3])'))..."
  "$PY" -m venv .venv
fi
stamp=".venv/.streamad-installed${extras:+-$extras}"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  say "updating pip..."
  pip_steps install -q --upgrade pip
  if ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('torch').split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
    say "installing PyTorch $TORCH_VERSION (CPU build, pinned; the largest download, ~200 MB)..."
    pip_steps install "torch==$TORCH_VERSION"
  fi
  say "installing streamad${extras:+ with the '$extras' extras} and its dependencies..."
  pip_steps install "torch==$TORCH_VERSION" -e ".${extras:+[$extras]}"
  echo "$want" > "$stamp"
  say "done: .venv is ready"
fi
