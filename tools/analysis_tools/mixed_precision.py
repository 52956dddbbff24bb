# Copyright (c) mmsecvit contributors. All rights reserved.
"""SecViT under autocast against float32: cluster agreement and the largest
activation per stage (float16 overflows beyond 65504).

Weights are randomised at a trained network's scale
(:func:`mmsecvit.testing.randomize_weights`), unless ``--checkpoint``
names an authors' or mmsecvit checkpoint.

Examples:
    python tools/analysis_tools/mixed_precision.py --archs s --size 224
    python tools/analysis_tools/mixed_precision.py --archs b l \
        --device cuda --size 512
"""
import argparse

import torch

from mmsecvit.analysis.benchmark import parse_size
from mmsecvit.analysis.mixed_precision import (FP16_MAX, activation_peaks,
                                               cluster_agreement)
from mmsecvit.engine.cli import (add_debug_argument, add_device_arguments,
                                 run_tool)
from mmsecvit.models import SecViT
from mmsecvit.testing import randomize_weights

DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--archs',
        nargs='+',
        default=['s'],
        help='SecViT archs (t s b l or full names)')
    parser.add_argument(
        '--size', type=parse_size, default=(224, 224), help='input HxW')
    parser.add_argument(
        '--dtypes', nargs='+', default=list(DTYPES), choices=list(DTYPES))
    add_device_arguments(parser, dtype=False)
    parser.add_argument('--checkpoint', help='weights instead of random')
    parser.add_argument('--seed', type=int, default=0)
    add_debug_argument(parser)
    return parser.parse_args(argv)


def build(arch, checkpoint, seed, device):
    init_cfg = dict(type='Pretrained', checkpoint=checkpoint) \
        if checkpoint else None
    model = SecViT(arch, out_norm=False, init_cfg=init_cfg)
    if checkpoint:
        model.init_weights()
    else:
        randomize_weights(model, seed)
    return model.eval().to(device)


def main(argv=None):
    args = parse_args(argv)
    gen = torch.Generator().manual_seed(args.seed)
    inputs = torch.randn(1, 3, *args.size, generator=gen).to(args.device)
    h, w = args.size
    print(f'device {args.device}, input {h}x{w}, torch {torch.__version__}')
    for arch in args.archs:
        model = build(arch, args.checkpoint, args.seed, args.device)
        peaks = {'fp32': activation_peaks(model, inputs)}
        for name in args.dtypes:
            dtype = DTYPES[name]
            agreement = cluster_agreement(model, inputs, dtype)
            print(f'{arch} {name}: stage-0 cluster agreement per block ' +
                  ' '.join(f'{a:.3f}' for a in agreement))
            peaks[name] = activation_peaks(model, inputs, dtype)
        for name, stage_peaks in peaks.items():
            print(f'{arch} {name}: largest |activation| ' +
                  ', '.join(f'{key} {value:.4g}'
                            for key, value in stage_peaks.items()) +
                  f' (fp16 max {FP16_MAX:.0f})')


if __name__ == '__main__':
    run_tool(main)
