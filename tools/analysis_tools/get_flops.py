# Copyright (c) mmsecvit contributors. All rights reserved.
"""FLOPs and parameters of SecViT backbones or of whole models.

Counts with mmengine's FlopAnalyzer plus a handle for
``scaled_dot_product_attention`` (SecViT's attention matmuls), one
multiply-add counted as one FLOP; see :mod:`mmsecvit.analysis.flops`.

Examples:
    # Backbones at 224x224, next to the paper's figures:
    python tools/analysis_tools/get_flops.py --archs t s b l --size 224
    # A whole detector (pretrained weights are not loaded):
    python tools/analysis_tools/get_flops.py \
        --config configs/maskrcnn_secvit_s.py --size 800x1344
"""
import argparse

from mmengine.config import DictAction

from mmsecvit.analysis.benchmark import parse_size
from mmsecvit.analysis.flops import backbone_flops, model_flops
from mmsecvit.engine.cli import add_debug_argument, argument_type, run_tool
from mmsecvit.models import parse_arch

# GFLOPs at 224x224 in the SecViT paper (arXiv 2405.13337, Table 1).
PAPER_GFLOPS = {'tiny': 2.5, 'small': 4.4, 'base': 9.7, 'large': 18.1}
FULL_NAMES = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large'}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--archs', nargs='+', type=argument_type(parse_arch),
        default=['tiny', 'small', 'base', 'large'],
        help='SecViT archs (t s b l or full names), or JSON / Python dicts')
    parser.add_argument('--config', help='count a whole model instead')
    parser.add_argument('--size', type=argument_type(parse_size),
                        default=(224, 224), help='input HxW')
    parser.add_argument(
        '--cluster-mode',
        choices=['num_clusters', 'cluster_size'],
        help="SecViT's clustering (default: num_clusters for --archs, the "
        "config's own for --config)")
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='overrides of the config, key=value')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    h, w = args.size
    if args.config:
        cfg_options = dict(args.cfg_options or {})
        if args.cluster_mode is not None:
            cfg_options['model.backbone.cluster_mode'] = args.cluster_mode
        result = model_flops(args.config, args.size, cfg_options)
        without = result['total'] - result['attention']
        print(f'{args.config} at {h}x{w}')
        print(f'  total    {result["total"] / 1e9:.1f} GFLOPs '
              f'({without / 1e9:.1f} without attention matmuls)')
        print(f'  backbone {result["backbone"] / 1e9:.1f} GFLOPs')
        print(f'  params   {result["params"] / 1e6:.1f} M')
        return
    print('| arch | input | params (M) | GFLOPs | GFLOPs without '
          'attention matmuls | paper GFLOPs (224x224) |')
    print('|---|---|---|---|---|---|')
    for arch in args.archs:
        if isinstance(arch, dict):
            name = 'custom'
        else:
            name = FULL_NAMES.get(arch, arch)
        cluster_mode = args.cluster_mode or 'num_clusters'
        result = backbone_flops(arch, args.size, cluster_mode=cluster_mode)
        without = result['total'] - result['attention']
        paper = PAPER_GFLOPS.get(name, '')
        print(f'| {name} | {h}x{w} | {result["params"] / 1e6:.2f} | '
              f'{result["total"] / 1e9:.3f} | {without / 1e9:.3f} '
              f'| {paper} |')


if __name__ == '__main__':
    run_tool(main)
