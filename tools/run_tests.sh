#!/usr/bin/env bash
# Copyright (c) mmsecvit contributors. All rights reserved.
#
# README command 2: install whatever is missing (test requirements included),
# then run the whole test suite. Extra arguments go to pytest, e.g.
#   bash tools/run_tests.sh -x -k secvit
# MMSECVIT_SKIP_INSTALL=1 skips the install step (an environment you manage
# yourself, or a run right after another one).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
cd "$REPO_ROOT"

if [[ "${MMSECVIT_SKIP_INSTALL:-0}" == 1 ]]; then
    echo "[mmsecvit tests] MMSECVIT_SKIP_INSTALL=1: using the environment as it is"
else
    bash tools/install.sh --tests
fi

# The whole suite unless the arguments name test paths of their own.
targets=(tests)
for arg in "$@"; do
    if [[ "$arg" != -* && -e "${arg%%::*}" ]]; then targets=(); break; fi
done
echo "[mmsecvit tests] python -m pytest ${targets[*]+${targets[*]}} $*"
status=0
"$PYTHON" -m pytest "${targets[@]+"${targets[@]}"}" "$@" || status=$?
if [[ $status == 5 ]]; then
    # pytest's "no tests were collected": a suite that ran nothing has not
    # passed (a wrong path, a -k that matches nothing, an import-time skip).
    echo "[mmsecvit tests] ERROR: pytest collected no tests (exit 5); treating it as a failure." >&2
fi
exit "$status"
