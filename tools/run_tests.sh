#!/usr/bin/env bash
# Copyright (c) mmsecvit contributors. All rights reserved.
#
# README command 2: install whatever is missing (test requirements included),
# then run the whole test suite. Extra arguments go to pytest, e.g.
#   bash tools/run_tests.sh -x -k secvit
# MMSECVIT_SKIP_INSTALL=1 skips the install step (an environment you manage
# yourself, or a run right after another one).
#
# The tests run in parallel processes (pytest-xdist, --dist worksteal): one
# per CPU core, at most 4, each with an equal share of the cores for torch's
# threads (OMP_NUM_THREADS, unless it is set). MMSECVIT_TEST_WORKERS=N sets
# the number of processes (1: one process, no xdist); an -n/--numprocesses
# or -p no:xdist of your own takes precedence over both, and --pdb or
# --trace runs one process. Without pytest-xdist installed the suite runs in
# one process.
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

# Parallel processes, unless the arguments choose for themselves or need one
# process (xdist refuses to run the debugger).
parallel=()
chosen=0
for arg in "$@"; do
    case "$arg" in
        -n | -n[0-9a-z]* | --numprocesses | --numprocesses=* | *no:xdist) chosen=1 ;;
        --pdb | --trace) chosen=1 ;;
    esac
done
# nproc alone would answer OMP_NUM_THREADS when it is set.
cores="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 1)"
workers="${MMSECVIT_TEST_WORKERS:-auto}"
if [[ "$workers" == auto ]]; then
    workers=$((cores < 4 ? cores : 4))
elif ! [[ "$workers" =~ ^[1-9][0-9]*$ ]]; then
    echo "[mmsecvit tests] ERROR: MMSECVIT_TEST_WORKERS must be a positive number or 'auto', got '$workers'." >&2
    exit 2
fi
if [[ $chosen == 0 && $workers -gt 1 ]]; then
    # --dist worksteal needs pytest-xdist 3.2.
    if "$PYTHON" -c 'import sys, xdist; sys.exit(tuple(map(int, xdist.__version__.split(".")[:2])) < (3, 2))' >/dev/null 2>&1; then
        parallel=(-n "$workers" --dist worksteal)
        if [[ -z "${OMP_NUM_THREADS:-}" ]]; then
            threads=$((cores / workers))
            export OMP_NUM_THREADS=$((threads > 0 ? threads : 1))
        fi
    else
        echo "[mmsecvit tests] pytest-xdist >= 3.2 is not installed: one test process (pip install 'pytest-xdist>=3.2', or run without MMSECVIT_SKIP_INSTALL=1, for $workers in parallel)"
    fi
fi

command=("$PYTHON" -m pytest "${targets[@]+"${targets[@]}"}"
         "${parallel[@]+"${parallel[@]}"}" "$@")
echo "[mmsecvit tests] ${command[*]}${OMP_NUM_THREADS:+ (OMP_NUM_THREADS=$OMP_NUM_THREADS)}"
status=0
"${command[@]}" || status=$?
if [[ $status == 5 ]]; then
    # pytest's "no tests were collected": a suite that ran nothing has not
    # passed (a wrong path, a -k that matches nothing, an import-time skip).
    echo "[mmsecvit tests] ERROR: pytest collected no tests (exit 5); treating it as a failure." >&2
fi
exit "$status"
