#!/usr/bin/env bash
# The test command: set up, then run every notebook (nbdev's runner) and every pytest file; it ends with the slowest
# items and the total (also in .test-results/durations.txt) and the countable line `tests: N passed, N failed, ...`.
# Two tiers:
#   bash tools/test.sh          the full suite. The artefact cache (.test-results/artefacts, chapter 4d) is emptied
#                               first, so the demo chain is trained once in this run and shared by the main job and
#                               the notebooks that only use its models; a chapter trains the stage it teaches.
#   bash tools/test.sh --fast   the loop after each change: the same tests, with every training run that the cache
#                               holds from an earlier run restored from it (it is keyed by the code, data and flags, so
#                               what a change touches trains again), teaching chapters included; two pytest-xdist
#                               workers with one torch thread each (measured: it pays here, where most items wait
#                               on subprocesses; in the full tier two workers fight over the cores and lose).
# Flags: --slow (or MINILLM_SLOW=1) also runs cells and tests marked slow. Other arguments go to pytest.
source "$(dirname "$0")/env.sh" test
args=(); fast=0
for a in "$@"; do
  case "$a" in
    --slow) export MINILLM_SLOW=1 ;;
    --fast) fast=1 ;;
    *) args+=("$a") ;;
  esac
done
mkdir -p .test-results
export MINILLM_TEST_ARTEFACTS="${MINILLM_TEST_ARTEFACTS:-$MINILLM_ROOT/.test-results/artefacts}"
if [ "$fast" = 1 ]; then
  export MINILLM_TEST_FAST=1
  if python -c 'import xdist' 2>/dev/null; then export OMP_NUM_THREADS=1; args=(-n 2 --dist loadgroup "${args[@]}"); fi
else rm -rf "$MINILLM_TEST_ARTEFACTS"; fi
start=$SECONDS
set +e
python -m pytest tests -p no:cacheprovider -q -rfEs --junitxml=.test-results/junit.xml "${args[@]}"
rc=$?
set -e
python tools/summary.py .test-results/junit.xml $((SECONDS - start))
exit $rc
