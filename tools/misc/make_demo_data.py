# Copyright (c) mmsecvit contributors. All rights reserved.
"""Generate the synthetic demo dataset (COCO + ADE20K layouts).

Example:
    python tools/misc/make_demo_data.py --out data/demo
"""
import argparse

from mmsecvit.datasets.demo import make_demo_data
from mmsecvit.engine.cli import add_debug_argument, run_tool


def parse_args():
    parser = argparse.ArgumentParser(
        description='Generate a small synthetic dataset in the COCO and '
        'ADE20K layouts for the demo configs (configs/demo/).')
    parser.add_argument(
        '--out', default='data/demo', help='output directory')
    parser.add_argument(
        '--num-train', type=int, default=32,
        help='training images per dataset')
    parser.add_argument(
        '--num-val', type=int, default=8,
        help='validation images per dataset')
    parser.add_argument(
        '--img-size', type=int, nargs=2, default=[256, 320],
        metavar=('HEIGHT', 'WIDTH'), help='image size')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    add_debug_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    info = make_demo_data(
        args.out,
        num_train=args.num_train,
        num_val=args.num_val,
        img_size=args.img_size,
        seed=args.seed)
    print(f'COCO-format demo data in {info["coco_root"]}:')
    for split, count in info['num_instances'].items():
        print(f'  {split}: {info["num_images"][split]} images, '
              f'{count} instances')
    print(f'ADE20K-format demo data in {info["ade_root"]}:')
    for split in ('training', 'validation'):
        print(f'  {split}: {info["num_images"][split]} images')


if __name__ == '__main__':
    run_tool(main)
