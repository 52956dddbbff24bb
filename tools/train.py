# Copyright (c) mmsecvit contributors. All rights reserved.
"""Train a SecViT detector (mmdet) or segmentor (mmseg) from a config.

Example:
    python tools/train.py configs/demo/mask-rcnn_secvit-s_fpn_demo-coco.py
"""
import argparse
import os
import sys

from mmengine.config import DictAction

from mmsecvit.utils import check_dataset_paths, check_pretrained_paths
from mmsecvit.utils.tool_utils import (build_runner, enable_amp,
                                       enable_auto_scale_lr, load_config,
                                       register_codebase, set_resume)


def parse_args():
    parser = argparse.ArgumentParser(
        description='Train a detector or a segmentor with a SecViT backbone')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or, without a path, from the '
        'latest checkpoint in the work directory')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the total batch size, relative to '
        "the config's auto_scale_lr.base_batch_size")
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank (torch >= 2.0) or
    # --local_rank (older) to the script.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main():
    args = parse_args()
    try:
        cfg = load_config(args.config, args.cfg_options, args.work_dir,
                          args.launcher)
        check_dataset_paths(cfg, splits=('train', 'val'))
        check_pretrained_paths(cfg)
        register_codebase(cfg)
        if args.amp:
            enable_amp(cfg)
        if args.auto_scale_lr:
            enable_auto_scale_lr(cfg)
        set_resume(cfg, args.resume)
    except (FileNotFoundError, ValueError) as err:
        # Missing data or a bad option: the message says what to do, a
        # traceback would only hide it.
        print(err, file=sys.stderr)
        sys.exit(2)

    runner = build_runner(cfg, args.launcher)
    runner.train()


if __name__ == '__main__':
    main()
