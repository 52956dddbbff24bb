# Copyright (c) mmsecvit contributors. All rights reserved.
"""Time the weight gradients of a SecViT backbone's dense convolutions
(stem and downsampling), oneDNN's kernel against the patch products (see
:mod:`mmsecvit.analysis.conv_grad_benchmark`).

Examples:
    # SecViT-S's training step at the detection size, 2 threads:
    python tools/analysis_tools/benchmark_conv_grad.py --arch s \
        --size 800x1333 --batch 2 --threads 2
"""
import argparse

import torch

from mmsecvit.analysis.benchmark import (matmul_rate, parse_arch_or_test,
                                         parse_size)
from mmsecvit.analysis.conv_grad_benchmark import (format_conv_grad_table,
                                                   record_dense_convs,
                                                   time_weight_grads)
from mmsecvit.engine.cli import (add_arch_argument, add_batch_argument,
                                 add_debug_argument, add_limit_size_argument,
                                 add_threads_argument, apply_threads_argument,
                                 argument_type, check_batch_argument, run_tool)
from mmsecvit.models import SecViT


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_arch_argument(parser)
    parser.add_argument(
        '--size',
        type=argument_type(parse_size),
        default=(800, 1333),
        help='input size HxW whose convolutions are timed')
    add_batch_argument(parser, 2, 'images per training step')
    parser.add_argument(
        '--repeats', type=int, default=6,
        help='timed calls per method and convolution')
    add_threads_argument(parser)
    add_limit_size_argument(parser)
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_batch_argument(args)
    apply_threads_argument(args)
    model = SecViT(arch=parse_arch_or_test(args.arch)).train()
    shapes = record_dense_convs(model,
                                torch.rand(args.batch, 3, *args.size))
    print(f'{len(shapes)} dense convolution shapes, '
          f'{sum(s.calls for s in shapes)} calls per forward; '
          f'CPU capability {torch.backends.cpu.get_cpu_capability()}, '
          f'{torch.get_num_threads()} threads')
    timings, applies = time_weight_grads(shapes, args.repeats)
    limit = matmul_rate('cpu', args.limit_size) if args.limit_size else None
    print(format_conv_grad_table(shapes, timings, applies, limit))


if __name__ == '__main__':
    run_tool(main)
