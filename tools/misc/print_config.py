# Copyright (c) mmsecvit contributors. All rights reserved.
"""Print the whole config, with its bases and --cfg-options merged.

Example:
    python tools/misc/print_config.py configs/maskrcnn_secvit_s.py
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config

from mmsecvit.engine.cli import (add_cfg_options_argument, add_debug_argument,
                                 run_tool)
from mmsecvit.utils.errors import MissingFileError


def parse_args():
    parser = argparse.ArgumentParser(description='Print the whole config')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--save-path',
        default=None,
        help='save the whole config to this file (.py, .json or .yml)')
    add_cfg_options_argument(parser)
    add_debug_argument(parser)
    args = parser.parse_args()
    if args.save_path is not None and not args.save_path.endswith(
            ('.py', '.json', '.yml', '.yaml')):
        parser.error('--save-path must end with .py, .json or .yml, got '
                     f'{args.save_path}')
    return args


def main():
    args = parse_args()
    if not osp.isfile(args.config):
        raise MissingFileError(f'Config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    print(f'Config:\n{cfg.pretty_text}')
    if args.save_path is not None:
        save_dir = osp.dirname(args.save_path)
        if save_dir:
            os.makedirs(save_dir, exist_ok=True)
        cfg.dump(args.save_path)
        print(f'Config saved to {args.save_path}')


if __name__ == '__main__':
    run_tool(main)
