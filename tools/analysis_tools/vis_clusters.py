# Copyright (c) mmsecvit contributors. All rights reserved.
"""Draw which tokens SecViT's Semantic Equitable Clustering put together.

Runs the backbone on an image and saves a grid of panels, one row per
requested block and one column per requested head: one colour per cluster
over the image, cluster boundaries in white. The assignments are recorded
from the model's own forward. Without ``--checkpoint`` the backbone keeps
random weights, and every panel says so.

Examples:
    python tools/analysis_tools/vis_clusters.py photo.jpg \
        --arch s --checkpoint secvit_s.pth --stage 0 1 2 --out clusters.png
    python tools/analysis_tools/vis_clusters.py photo.jpg --stage 2 \
        --block 5 --head 3
"""
import argparse
import os.path as osp

import mmcv
import mmengine

from mmsecvit.engine.cli import (add_debug_argument, argument_type,
                                 parse_device, run_tool)
from mmsecvit.models import parse_arch
from mmsecvit.utils.errors import MissingFileError
from mmsecvit.utils.image import read_image
from mmsecvit.visualization import (build_vis_backbone, collect_cluster_maps,
                                    draw_cluster_grid, resize_longer_side,
                                    select_cluster_maps)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw the token clusters of SecViT on an image.')
    parser.add_argument('image', help='image file')
    parser.add_argument(
        '--arch',
        default='s',
        help="arch name (t, s, b, l or tiny, small, ...) or a dict literal "
        "like \"dict(embed_dims=[...], depths=[...], num_heads=[...], "
        "num_clusters=[...])\" (default: s)")
    parser.add_argument(
        '--checkpoint',
        help='authors\' ImageNet checkpoint or an mmsecvit/mmdet/mmseg one; '
        'random weights without it')
    parser.add_argument(
        '--stage',
        type=int,
        nargs='+',
        default=[0, 1, 2],
        help='stages to draw (default: 0 1 2, the clustered ones)')
    parser.add_argument(
        '--block',
        type=int,
        nargs='+',
        default=[-1],
        help='blocks of each stage to draw, -1 for the last (default: -1)')
    parser.add_argument(
        '--head',
        type=int,
        nargs='+',
        help='heads to draw, -1 for the last (default: all heads, one '
        'panel each)')
    parser.add_argument(
        '--size',
        type=int,
        default=224,
        help='longer side of the image fed to the backbone, in pixels '
        '(default: 224, the ImageNet training size)')
    parser.add_argument(
        '--cluster-mode',
        default='num_clusters',
        choices=['num_clusters', 'cluster_size'],
        help='how the backbone sizes its clusters (see SecViT)')
    parser.add_argument(
        '--cluster-size',
        type=int,
        default=98,
        help='tokens per cluster in cluster_size mode (default: 98)')
    parser.add_argument(
        '--alpha',
        type=float,
        default=0.5,
        help='opacity of the cluster colours, 0..1 (default: 0.5)')
    parser.add_argument(
        '--seed', type=int, default=0, help='seed of random weights')
    parser.add_argument(
        '--device',
        type=argument_type(parse_device),
        default='cpu',
        help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--out', default='clusters.png', help='output image (PNG)')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    image = read_image(args.image, channel_order='rgb')
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        raise MissingFileError(f'No checkpoint at {args.checkpoint!r}.')
    image = resize_longer_side(image, args.size)

    backbone = build_vis_backbone(
        parse_arch(args.arch),
        checkpoint=args.checkpoint,
        cluster_mode=args.cluster_mode,
        cluster_size=args.cluster_size,
        seed=args.seed,
        device=args.device)
    maps = select_cluster_maps(
        collect_cluster_maps(backbone, image), args.stage, args.block)
    figure = draw_cluster_grid(
        image,
        maps,
        heads=args.head,
        alpha=args.alpha,
        random_weights=args.checkpoint is None)

    mmengine.mkdir_or_exist(osp.dirname(osp.abspath(args.out)))
    mmcv.imwrite(mmcv.rgb2bgr(figure), args.out)
    weights = 'random weights' if args.checkpoint is None else \
        args.checkpoint
    print(f'Saved {len(maps)} block(s) x heads of SecViT-{args.arch} '
          f'({weights}) on a {image.shape[1]}x{image.shape[0]} image to '
          f'{args.out} ({figure.shape[1]}x{figure.shape[0]} px).')


if __name__ == '__main__':
    run_tool(main)
