# Sourced by scripts/run and scripts/test: create .venv and install lcx into it.
# Re-installs only when pyproject.toml or requirements.lock changed since the last time.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${LCX_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

lcx_venv() {
  local extras="$1"
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "lcx needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1))" >&2
    exit 1
  fi
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local stamp="$VENV/.lcx-installed-$extras"
  local want
  want="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements.lock" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setting up $VENV ..." >&2
    "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
    # setuptools warns (BuildBackendWarning, a UserWarning) about every editable install of
    # a project with several top-level packages, and pip passes it through --quiet
    PYTHONWARNINGS="ignore::UserWarning" "$VENV/bin/python" -m pip install --quiet \
      -c "$ROOT/requirements.lock" -e "$ROOT$extras" >&2
    echo "$want" > "$stamp"
  fi
}
