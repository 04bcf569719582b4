#!/usr/bin/env bash
# ardistill's one entry point for a fresh machine.
#
#   ./run.sh demo [args]   set everything up (idempotent), then run the main job: `ardistill demo`
#   ./run.sh test [args]   set everything up (idempotent), then run the whole test suite (pytest)
#   ./run.sh setup         only set up
#   ./run.sh <anything>    set up, then `ardistill <anything>`
#
# Setup creates ./.venv (or uses $ARDISTILL_VENV). torch is never replaced: if the base Python
# already has torch (say a CUDA build), the venv sees it through --system-site-packages and nothing
# is installed for it; otherwise `pip install "$ARDISTILL_TORCH"` runs once (default torch==2.13.0,
# the CPU wheel on our machines). Only then is ardistill installed, so its `torch>=2.1` is already
# satisfied and pip never picks a torch build by itself.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"
py="${PYTHON:-python3}"
venv="${ARDISTILL_VENV:-$root/.venv}"
torch_spec="${ARDISTILL_TORCH:-torch==2.13.0}"

log() { printf '[run.sh] %s\n' "$*" >&2; }

setup() {
  if [ ! -x "$venv/bin/python" ]; then
    if "$py" -c "import torch" >/dev/null 2>&1; then
      log "creating $venv (reusing the torch of $py: $("$py" -c 'import torch; print(torch.__version__)'))"
      "$py" -m venv --system-site-packages "$venv"
    else
      log "creating $venv"
      "$py" -m venv "$venv"
    fi
  fi
  local vpy="$venv/bin/python"
  if ! "$vpy" -c "import torch" >/dev/null 2>&1; then
    log "installing $torch_spec"
    "$vpy" -m pip install --disable-pip-version-check -q "$torch_spec"
  fi
  # Reinstall ardistill only when its metadata changed (idempotent and fast on a second run).
  local stamp="$venv/.ardistill-setup" want
  want="$(cat pyproject.toml | "$vpy" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! "$vpy" -c "import ardistill" >/dev/null 2>&1; then
    log "installing ardistill and its dependencies into $venv"
    "$vpy" -m pip install --disable-pip-version-check -q -e ".[dev]"
    echo "$want" >"$stamp"
  fi
}

# Debian packages the tests need, installed by name as root (nothing downloads a browser or a
# toolchain on its own): chromium for the browser test (tests/app/test_app_browser.py, through
# Playwright), a C compiler (`cc`, package gcc) for the flow map's compiled kernel
# (tests/flow/test_native.py; without one the library falls back to PyTorch, but its test fails).
ensure_tool() {  # ensure_tool COMMAND PACKAGE WHAT
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's $2 for $3"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"; } \
      >&2 || { log "apt-get install $2 failed: $3 will fail"; return 1; }
  else
    log "$1 is missing: install Debian's $2 package ($3 needs it)"
    return 1
  fi
}

cmd="${1:-demo}"
[ $# -gt 0 ] && shift
setup
export PATH="$venv/bin:$PATH"
case "$cmd" in
  setup) log "ready: $venv" ;;
  test)
    ensure_tool chromium chromium "the browser test" || true
    ensure_tool cc gcc "the compiled flow kernel's test" || true
    exec "$venv/bin/python" -m pytest "$@" ;;
  demo) exec "$venv/bin/ardistill" demo "$@" ;;
  *) exec "$venv/bin/ardistill" "$cmd" "$@" ;;
esac
