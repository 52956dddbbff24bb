#!/usr/bin/env bash
# Copyright (c) mmsecvit contributors. All rights reserved.
#
# README command 2: install whatever is missing (test requirements included),
# then run the whole test suite. Extra arguments go to pytest, e.g.
#   bash tools/run_tests.sh -x -k secvit
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
cd "$REPO_ROOT"

bash tools/install.sh --tests

echo "[mmsecvit tests] python -m pytest tests $*"
status=0
"$PYTHON" -m pytest tests "$@" || status=$?
if [[ $status == 5 ]]; then
    # pytest's "no tests were collected": a suite that ran nothing has not
    # passed (a wrong path, a -k that matches nothing, an import-time skip).
    echo "[mmsecvit tests] ERROR: pytest collected no tests (exit 5); treating it as a failure." >&2
fi
exit "$status"
