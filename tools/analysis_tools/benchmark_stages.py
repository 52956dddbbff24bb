# Copyright (c) mmsecvit contributors. All rights reserved.
"""Time the stem and each stage of a SecViT backbone next to mmdet's Swin-T,
with each part's GMACs and arithmetic rate (see
:mod:`mmsecvit.analysis.stage_timing`).

Examples:
    # Where SecViT-S's time goes at 224x224 (cluster-size mode), 2 threads:
    python tools/analysis_tools/benchmark_stages.py --arch s \
        --size 224x224 --threads 2
    # the ADE20K crop, the paper's clustering mode
    python tools/analysis_tools/benchmark_stages.py --arch s \
        --size 512x512 --mode num_clusters --threads 2
"""
import argparse

import torch

from mmsecvit.analysis.benchmark import (MODES, Case, build_backbone,
                                         matmul_rate, parse_arch_or_test,
                                         parse_size)
from mmsecvit.analysis.stage_timing import (format_part_table, part_gmacs,
                                            time_parts)
from mmsecvit.engine.cli import (add_arch_argument, add_batch_argument,
                                 add_debug_argument, add_device_arguments,
                                 add_limit_size_argument, add_threads_argument,
                                 apply_threads_argument, argument_type,
                                 check_batch_argument, run_tool)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_arch_argument(parser)
    parser.add_argument(
        '--mode',
        choices=MODES,
        default='cluster_size',
        help='SecViT cluster mode (default: the one of the speed targets)')
    parser.add_argument(
        '--size',
        type=argument_type(parse_size),
        default=(224, 224),
        help='input size HxW')
    add_batch_argument(parser)
    add_device_arguments(parser, dtype=False)
    parser.add_argument(
        '--warmup', type=int, default=2,
        help='untimed forwards of each model first')
    parser.add_argument(
        '--repeats', type=int, default=10,
        help='timed forwards of each model (the models take turns)')
    parser.add_argument(
        '--no-swin', action='store_true', help='time SecViT alone')
    add_threads_argument(parser)
    add_limit_size_argument(parser)
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_batch_argument(args)
    apply_threads_argument(args)
    secvit = Case(model='secvit', arch=parse_arch_or_test(args.arch),
                  mode=args.mode)
    cases = [secvit] + ([] if args.no_swin else [Case(model='swin-t')])
    models = []
    for case in cases:
        model = build_backbone(case).to(args.device)
        model.eval()  # mmdet's Swin returns None from eval()
        models.append(model)
    x = torch.rand(args.batch, 3, *args.size, device=args.device)
    times = time_parts(models, x, args.warmup, args.repeats)
    gmacs = [part_gmacs(model, x) for model in models]
    limit = (matmul_rate(args.device, args.limit_size)
             if args.limit_size else None)
    print(f'{args.size[0]}x{args.size[1]}, batch {args.batch}, '
          f'{args.device}, {torch.get_num_threads()} threads; medians of '
          f'{args.repeats} forwards')
    print(format_part_table([case.name for case in cases], times, gmacs,
                            limit))


if __name__ == '__main__':
    run_tool(main)
