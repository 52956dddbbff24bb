# Copyright (c) mmsecvit contributors. All rights reserved.
"""Time attention kernels at the cluster shapes a SecViT backbone uses (see
:mod:`mmsecvit.analysis.attention_benchmark`).

Examples:
    # The paper's mode at the detection size, 2 threads, PyTorch's kernel
    # against the same arithmetic as matrix products:
    python tools/analysis_tools/benchmark_attention.py --arch s \
        --cluster-mode num_clusters --size 800x1333 --threads 2
    # ... and flex_attention compiled by Inductor (compiles per shape):
    python tools/analysis_tools/benchmark_attention.py --arch s \
        --size 800x1333 --threads 2 --kernels sdpa explicit flex
    # On a GPU, in bf16:
    python tools/analysis_tools/benchmark_attention.py --arch s \
        --size 800x1333 --device cuda --dtype bfloat16
"""
import argparse

import torch

from mmsecvit.analysis.attention_benchmark import (KERNELS,
                                                   format_attention_table,
                                                   record_attention_shapes,
                                                   time_attention)
from mmsecvit.analysis.benchmark import (MODES, matmul_rate,
                                         parse_arch_or_test, parse_size)
from mmsecvit.engine.cli import (add_arch_argument, add_batch_argument,
                                 add_debug_argument, add_device_arguments,
                                 add_limit_size_argument, add_threads_argument,
                                 apply_threads_argument, argument_type,
                                 check_batch_argument, run_tool)
from mmsecvit.models import SecViT


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_arch_argument(parser)
    parser.add_argument(
        '--cluster-mode', default='num_clusters', choices=MODES)
    parser.add_argument(
        '--size',
        type=argument_type(parse_size),
        default=(800, 1333),
        help='input size HxW whose attention shapes are timed')
    add_batch_argument(parser)
    parser.add_argument(
        '--kernels',
        nargs='+',
        default=['sdpa', 'explicit'],
        choices=sorted(KERNELS))
    parser.add_argument(
        '--repeats', type=int, default=5, help='timed calls per shape')
    add_device_arguments(parser)
    add_threads_argument(parser)
    add_limit_size_argument(parser)
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_batch_argument(args)
    apply_threads_argument(args)
    arch = parse_arch_or_test(args.arch)
    model = SecViT(arch=arch, cluster_mode=args.cluster_mode).eval()
    # The shapes do not depend on the weights or the device: recorded on
    # the CPU in float32 whatever is timed.
    shapes = record_attention_shapes(
        model, torch.rand(args.batch, 3, *args.size))
    print(f'{len(shapes)} attention shapes, '
          f'{sum(s.calls for s in shapes)} calls per forward')
    timings = time_attention(
        shapes,
        args.kernels,
        repeats=args.repeats,
        device=args.device,
        dtype=getattr(torch, args.dtype))
    limit = (
        matmul_rate(args.device, args.limit_size)
        if args.limit_size else None)
    if limit is not None:
        print(f'fp32 limit ({args.limit_size}x{args.limit_size} matrix '
              f'product): {limit:.1f} GMAC/s')
    print(format_attention_table(shapes, timings, limit))


if __name__ == '__main__':
    run_tool(main)
