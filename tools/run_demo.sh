#!/usr/bin/env bash
# Copyright (c) mmsecvit contributors. All rights reserved.
#
# README command 1: install whatever is missing, generate the small demo
# dataset and train + evaluate Mask R-CNN with a SecViT-S backbone on it
# (COCO bbox/segm AP are printed at the end). Runs on CPU or one GPU.
# Extra arguments go to tools/train.py, e.g.
#   bash tools/run_demo.sh --cfg-options train_cfg.max_epochs=1
# MMSECVIT_DEMO_DATA (default data/demo) puts the data elsewhere; the demo
# configs read the same variable. MMSECVIT_DEMO_WORK_DIR sets the work dir.
# MMSECVIT_SKIP_INSTALL=1 skips the install step, as in run_tests.sh.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
CONFIG="configs/demo/mask-rcnn_secvit-s_fpn_demo-coco.py"

# A relative path given in the variables is taken from where the script was
# started; the defaults are inside the repository.
absolute() {
    case "$1" in
        /*) printf '%s' "$1" ;;
        *) printf '%s/%s' "$PWD" "$1" ;;
    esac
}
if [[ -n "${MMSECVIT_DEMO_DATA:-}" ]]; then
    DATA_DIR="$(absolute "$MMSECVIT_DEMO_DATA")"
else
    DATA_DIR="$REPO_ROOT/data/demo"
fi
if [[ -n "${MMSECVIT_DEMO_WORK_DIR:-}" ]]; then
    WORK_DIR="$(absolute "$MMSECVIT_DEMO_WORK_DIR")"
else
    WORK_DIR="$REPO_ROOT/work_dirs/demo_mask-rcnn"
fi
# The demo configs read the data root from this variable (an empty one
# would stop them with mmengine's KeyError).
export MMSECVIT_DEMO_DATA="$DATA_DIR"
cd "$REPO_ROOT"

if [[ "${MMSECVIT_SKIP_INSTALL:-0}" == 1 ]]; then
    echo "[mmsecvit demo] MMSECVIT_SKIP_INSTALL=1: using the environment as it is"
else
    bash tools/install.sh
fi

if [[ -f "$DATA_DIR/coco/annotations/instances_val2017.json" ]]; then
    echo "[mmsecvit demo] demo data already in $DATA_DIR"
else
    echo "[mmsecvit demo] generating demo data in $DATA_DIR"
    "$PYTHON" tools/misc/make_demo_data.py --out "$DATA_DIR"
fi

echo "[mmsecvit demo] training + evaluating $CONFIG (work dir $WORK_DIR)"
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
echo "[mmsecvit demo] done: logs, checkpoints and metrics are in $WORK_DIR"
