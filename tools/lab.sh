#!/usr/bin/env bash
# Convenience: set up and open JupyterLab on the notebooks.
source "$(dirname "$0")/env.sh" dev
exec jupyter lab --notebook-dir="$MINILLM_ROOT/nbs" --ip=127.0.0.1 "$@"
