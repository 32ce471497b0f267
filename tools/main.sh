#!/usr/bin/env bash
# The main job: set up, then run the MiniLLM pipeline (today: chapter 1, the tokenizer).
source "$(dirname "$0")/env.sh" runtime
python -m minillm.tokenizer demo "$@"
