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
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
CONFIG="configs/demo/mask-rcnn_secvit-s_fpn_demo-coco.py"
DATA_DIR="${MMSECVIT_DEMO_DATA:-data/demo}"
WORK_DIR="${MMSECVIT_DEMO_WORK_DIR:-work_dirs/demo_mask-rcnn}"
cd "$REPO_ROOT"

bash tools/install.sh

if [[ -f "$DATA_DIR/coco/annotations/instances_val2017.json" ]]; then
    echo "[mmsecvit demo] demo data already in $DATA_DIR"
else
    echo "[mmsecvit demo] generating demo data in $DATA_DIR"
    "$PYTHON" tools/misc/make_demo_data.py --out "$DATA_DIR"
fi

echo "[mmsecvit demo] training + evaluating $CONFIG (work dir $WORK_DIR)"
"$PYTHON" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" "$@"
echo "[mmsecvit demo] done: logs, checkpoints and metrics are in $WORK_DIR"
