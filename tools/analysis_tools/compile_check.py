# Copyright (c) mmsecvit contributors. All rights reserved.
"""Compile a SecViT backbone with dynamic shapes and run it on several
input sizes: the graphs built, and per size the difference from eager or
the error (see :mod:`mmsecvit.analysis.compile_check`).

Examples:
    # Inductor, the small test arch, float64 (minutes per graph on 2 cores):
    python tools/analysis_tools/compile_check.py --arch test \
        --sizes 96x80 128x72 64x64 --dtype float64
    # SecViT-S, float32, several detection sizes:
    python tools/analysis_tools/compile_check.py --arch s \
        --sizes 800x1333 640x960 768x1024
    # Each block compiled on its own (graphs shared within a stage):
    python tools/analysis_tools/compile_check.py --arch s --per-block \
        --sizes 224x224 256x320 320x256 --dtype float64
    # ... with compile time, eager and compiled latency (5 runs each):
    python tools/analysis_tools/compile_check.py --arch s --threads 2 \
        --sizes 512x512 640x640 --cluster-mode cluster_size --repeats 5
"""
import argparse

import torch

from mmsecvit.analysis.benchmark import MODES, parse_arch_or_test, parse_size
from mmsecvit.analysis.compile_check import (backbone_blocks,
                                             check_dynamic_compile)
from mmsecvit.engine.cli import (add_arch_argument, add_debug_argument,
                                 add_threads_argument, apply_threads_argument,
                                 run_tool)
from mmsecvit.models import SecViT
from mmsecvit.utils.errors import ConfigValueError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_arch_argument(parser, 'test')
    parser.add_argument(
        '--sizes',
        nargs='+',
        type=parse_size,
        default=[(96, 80), (128, 72), (64, 64)])
    parser.add_argument(
        '--cluster-mode', default='num_clusters', choices=MODES)
    parser.add_argument(
        '--backend',
        default='inductor',
        help="torch.compile backend ('inductor', "
        "'aot_eager', ...)")
    parser.add_argument(
        '--dtype', default='float32', choices=['float32', 'float64'])
    parser.add_argument(
        '--per-block',
        action='store_true',
        help='compile each block on its own (regional compilation; stem '
        'and downsampling layers eager) instead of the whole backbone')
    parser.add_argument(
        '--repeats',
        type=int,
        default=0,
        help='timed forwards per size, eager and compiled in turn, after '
        'the first compiled call (0: report the first call only)')
    add_threads_argument(parser)
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    arch = parse_arch_or_test(args.arch)
    if args.repeats < 0:
        raise ConfigValueError(
            f'--repeats must be 0 or more, got {args.repeats}.')
    dtype = getattr(torch, args.dtype)
    apply_threads_argument(args)
    torch.manual_seed(0)
    model = SecViT(arch=arch, cluster_mode=args.cluster_mode).to(dtype)
    report = check_dynamic_compile(
        model.eval(),
        args.sizes,
        args.backend,
        dtype,
        log=print,
        repeats=args.repeats,
        regions=backbone_blocks if args.per_block else None)
    print(f'graphs: {report.graphs}, failed sizes: {len(report.errors)}')


if __name__ == '__main__':
    run_tool(main)
