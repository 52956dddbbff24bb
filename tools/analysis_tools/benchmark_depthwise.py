# Copyright (c) mmsecvit contributors. All rights reserved.
"""Time a SecViT backbone's depth-wise convolutions on channels-last maps
(as SecViT runs them) against contiguous ones (see
:mod:`mmsecvit.analysis.depthwise_benchmark`).

Examples:
    # SecViT-S's training step at the detection size, 2 threads:
    python tools/analysis_tools/benchmark_depthwise.py --arch s \
        --size 800x1333 --batch 2 --threads 2
    # On a GPU, in bf16:
    python tools/analysis_tools/benchmark_depthwise.py --arch s \
        --size 800x1333 --batch 2 --device cuda --dtype bfloat16
"""
import argparse

import torch

from mmsecvit.analysis.benchmark import parse_arch_or_test, parse_size
from mmsecvit.analysis.depthwise_benchmark import (PASSES,
                                                   format_depthwise_table,
                                                   record_depthwise_convs,
                                                   time_depthwise_layouts)
from mmsecvit.engine.cli import (add_arch_argument, add_batch_argument,
                                 add_debug_argument, add_device_arguments,
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
    add_batch_argument(parser, 2, 'images per batch')
    parser.add_argument(
        '--passes',
        nargs='+',
        default=list(PASSES),
        choices=PASSES,
        help="'forward' alone and/or 'forward_backward' (the forward with "
        "the input's, the weight's and the bias's gradients)")
    parser.add_argument(
        '--repeats',
        type=int,
        default=10,
        help='timed calls per layout, pass and convolution')
    add_device_arguments(parser)
    add_threads_argument(parser)
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    check_batch_argument(args)
    apply_threads_argument(args)
    model = SecViT(arch=parse_arch_or_test(args.arch)).eval()
    # The shapes do not depend on the weights or the device: recorded on
    # the CPU in float32 whatever is timed.
    shapes = record_depthwise_convs(model, torch.rand(args.batch, 3,
                                                      *args.size))
    print(f'{len(shapes)} depth-wise convolution shapes, '
          f'{sum(s.calls for s in shapes)} calls per forward; '
          f'{args.device}, {args.dtype}, {torch.get_num_threads()} threads')
    timings = time_depthwise_layouts(
        shapes,
        args.passes,
        repeats=args.repeats,
        device=args.device,
        dtype=getattr(torch, args.dtype))
    print(format_depthwise_table(shapes, timings))


if __name__ == '__main__':
    run_tool(main)
