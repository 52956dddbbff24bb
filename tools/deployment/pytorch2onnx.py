# Copyright (c) mmsecvit contributors. All rights reserved.
"""Export a SecViT detector, segmentor or backbone to ONNX and check it
with ONNX Runtime.

The graph takes the image batch after the data preprocessor (normalised,
padded), named ``input`` (B, 3, H, W), and returns the tensors of the
model's ``_forward`` (raw head outputs) or, with ``--backbone-only``, the
backbone's feature maps. See docs/deployment.md.

Examples:
    python tools/deployment/pytorch2onnx.py \
        configs/upernet/upernet_secvit-s_8xb2-160k_ade20k-512x512.py \
        --weights iter_160000.pth --shape 576 576 \
        --out upernet_secvit-s.onnx
    python tools/deployment/pytorch2onnx.py \
        configs/mask_rcnn/mask-rcnn_secvit-s_fpn_1x_coco.py --backbone-only \
        --shape 800 1333 --dynamic --cluster-mode cluster_size \
        --out secvit-s_backbone.onnx
"""
import argparse
import sys

from mmengine.config import DictAction

from mmsecvit.deployment.onnx_export import (ATOL, OPSET, RTOL,
                                             build_export_model, export_onnx,
                                             verification_inputs, verify_onnx)
from mmsecvit.engine.cli import add_debug_argument, run_tool
from mmsecvit.models.layers.sec_attention import CLUSTER_MODES


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a positive integer (give --shape H W, e.g. '
            '--shape 800 1333)')
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument(
        '--weights', help='checkpoint of the whole model (random without)')
    parser.add_argument(
        '--shape',
        nargs=2,
        type=positive_int,
        default=[800, 1333],
        metavar=('H', 'W'),
        help='height and width of the input traced for the export')
    parser.add_argument(
        '--dynamic',
        action='store_true',
        help='make batch, height and width dynamic (else the graph takes '
        'only --shape, batch 1)')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='export the backbone alone (its feature maps)')
    parser.add_argument(
        '--cluster-mode',
        choices=CLUSTER_MODES,
        help="override the backbone's cluster mode")
    parser.add_argument(
        '--no-verify',
        dest='verify',
        action='store_false',
        help='skip the ONNX Runtime check (on by default: the export size '
        'and, with --dynamic, batch 2 at another size and a size that '
        'leaves a shorter last cluster)')
    parser.add_argument(
        '--opset', type=int, default=OPSET, help='ONNX opset version')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. model.backbone.cluster_size=64')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    shape = tuple(args.shape)
    model = build_export_model(
        args.config,
        weights=args.weights,
        backbone_only=args.backbone_only,
        cluster_mode=args.cluster_mode,
        cfg_options=args.cfg_options)
    names = export_onnx(
        model, args.out, shape, dynamic=args.dynamic, opset=args.opset)
    print(f'Exported {args.out} (opset {args.opset}, outputs: '
          f'{", ".join(names)})')
    if not args.verify:
        return 0
    checks = verify_onnx(model, args.out,
                         verification_inputs(model, shape, args.dynamic))
    print(f'ONNX Runtime vs PyTorch (float32, rtol {RTOL}, atol {ATOL}):')
    for check in checks:
        print(f'  {check}')
    if not all(check.passed for check in checks):
        print(
            'Error: ONNX Runtime does not reproduce PyTorch.', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    # A model that cannot export ends with one message and exit code 2.
    sys.exit(run_tool(main))
