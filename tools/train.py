# Copyright (c) mmsecvit contributors. All rights reserved.
"""Train a SecViT detector (mmdet) or segmentor (mmseg) from a config.

Example:
    python tools/train.py configs/demo/mask-rcnn_secvit-s_fpn_demo-coco.py
"""
import argparse

from mmsecvit.engine import shutdown_distributed
from mmsecvit.engine.cli import (add_cfg_options_argument, add_debug_argument,
                                 add_launcher_arguments, export_local_rank,
                                 run_tool)
from mmsecvit.engine.preflight import (check_backbone_channels,
                                       check_dataset_paths,
                                       check_pretrained_paths)
from mmsecvit.engine.tool_config import (build_runner, enable_amp,
                                         enable_auto_scale_lr,
                                         enable_compile_support,
                                         enable_preemption, load_config,
                                         register_codebase,
                                         resume_after_requeue, set_resume)


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
        '--no-preemption',
        action='store_true',
        help='do not stop with a checkpoint on SIGTERM/SIGUSR1 (nor requeue '
        'the Slurm job on SIGUSR1); see docs/distributed.md')
    add_cfg_options_argument(parser)
    add_launcher_arguments(parser)
    add_debug_argument(parser)
    args = parser.parse_args()
    export_local_rank(args)
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir,
                      args.launcher)
    check_dataset_paths(cfg, splits=('train', 'val'))
    check_pretrained_paths(cfg)
    check_backbone_channels(cfg)
    register_codebase(cfg)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        enable_auto_scale_lr(cfg)
    if not args.no_preemption:
        enable_preemption(cfg)
    enable_compile_support(cfg)
    set_resume(cfg, resume_after_requeue(args.resume))

    runner = build_runner(cfg, args.launcher)
    runner.train()
    # Every rank got here: tear the process group down while Python is
    # still whole (a gloo group left to the exit can abort the process).
    shutdown_distributed(barrier=True)


if __name__ == '__main__':
    run_tool(main)
