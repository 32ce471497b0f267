#!/usr/bin/env bash
# The main job: set up, then run the MiniLLM pipeline. Today: chapter 1 — train the default tokenizer from the
# shipped corpus into ./out/tokenizer and show what it does. Extra arguments go to `train_tokenizer`.
source "$(dirname "$0")/env.sh" runtime
python -m minillm.tokenizer --out_dir "$MINILLM_ROOT/out/tokenizer" "$@"
