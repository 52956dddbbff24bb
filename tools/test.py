# Copyright (c) mmsecvit contributors. All rights reserved.
"""Test (and evaluate) a SecViT detector (mmdet) or segmentor (mmseg).

Example:
    python tools/test.py configs/demo/mask-rcnn_secvit-s_fpn_demo-coco.py \
        work_dirs/demo/epoch_6.pth --out results.pkl
"""
import argparse
import os

from mmsecvit.engine import shutdown_distributed
from mmsecvit.engine.cli import (add_cfg_options_argument, add_debug_argument,
                                 add_launcher_arguments, export_local_rank,
                                 run_tool)
from mmsecvit.engine.preflight import (check_backbone_channels,
                                       check_dataset_paths)
from mmsecvit.engine.runtime import LOAD_FROM_IF_NO_CHECKPOINT
from mmsecvit.engine.tool_config import (build_runner, enable_tta,
                                         enable_visualization, load_config,
                                         register_codebase,
                                         results_dump_metric,
                                         set_seg_output_dir)
from mmsecvit.utils.errors import MissingFileError


def parse_args():
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) a detector or a segmentor with a '
        'SecViT backbone')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump the predictions to a .pkl file for offline evaluation '
        '(mmseg configs: or, given a directory, save them there as png)')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved. A relative '
        'path is saved under work_dir/timestamp/')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    add_cfg_options_argument(parser)
    add_launcher_arguments(parser)
    parser.add_argument(
        '--tta', action='store_true', help='test-time augmentation')
    add_debug_argument(parser)
    args = parser.parse_args()
    export_local_rank(args)
    return args


def main():
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options, args.work_dir,
                      args.launcher)
    check_dataset_paths(cfg, splits=('test', ))
    check_backbone_channels(cfg)
    if '://' not in args.checkpoint and not os.path.isfile(args.checkpoint):
        raise MissingFileError(f'Checkpoint not found: {args.checkpoint}. '
                               'Give the path of an existing checkpoint.')
    codebase = register_codebase(cfg)
    # The config the Runner saved into a work dir after --resume (or a
    # requeued Slurm job) says resume=True: testing loads weights only.
    cfg.resume = False
    cfg.pop(LOAD_FROM_IF_NO_CHECKPOINT, None)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        enable_visualization(cfg, codebase, args.show_dir, args.show,
                             args.wait_time)
    if args.tta:
        enable_tta(cfg, codebase)
    dump_metric = None
    if args.out is not None:
        if codebase == 'mmseg' and not args.out.endswith(('.pkl', '.pickle')):
            set_seg_output_dir(cfg, args.out)
        else:
            dump_metric = results_dump_metric(codebase, args.out)

    runner = build_runner(cfg, args.launcher, checkpoint_purpose='evaluate')
    if dump_metric is not None:
        runner.test_evaluator.metrics.append(dump_metric)
    runner.test()
    # Every rank got here: tear the process group down while Python is
    # still whole (a gloo group left to the exit can abort the process).
    shutdown_distributed(barrier=True)


if __name__ == '__main__':
    run_tool(main)
