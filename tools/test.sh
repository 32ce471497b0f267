#!/usr/bin/env bash
# The test command: set up, check the export, run every notebook with nbdev's test runner and every pytest file.
# Flags: --slow (or MINILLM_SLOW=1) also runs cells and tests marked slow. Other arguments go to pytest.
source "$(dirname "$0")/env.sh" test
args=()
for a in "$@"; do
  if [ "$a" = "--slow" ]; then export MINILLM_SLOW=1; else args+=("$a"); fi
done
mkdir -p .test-results
set +e
python -m pytest tests -p no:cacheprovider -q -rfEs --junitxml=.test-results/junit.xml "${args[@]}"
rc=$?
set -e
python tools/summary.py .test-results/junit.xml
exit $rc
