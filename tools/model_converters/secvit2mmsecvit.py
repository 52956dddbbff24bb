# Copyright (c) mmsecvit contributors. All rights reserved.
"""Convert an authors' SecViT ImageNet checkpoint into an mmsecvit backbone
checkpoint: the classification head is dropped, the chosen weights ('model'
or, with --ema, 'model_ema') are stored under 'state_dict', and the arch they
fit is checked and recorded."""
import argparse
import io
import os.path as osp

import torch

from mmsecvit.engine.cli import add_debug_argument, run_tool
from mmsecvit.models import infer_arch
from mmsecvit.models.backbones.secvit_weights import (read_checkpoint,
                                                      select_state_dict,
                                                      strip_classifier)
from mmsecvit.utils.errors import CheckpointMismatchError, MissingFileError
from mmsecvit.utils.fileio import atomic_write_bytes


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('src', help="the authors' checkpoint (.pth)")
    parser.add_argument('dst', help='where to write the mmsecvit checkpoint')
    parser.add_argument(
        '--ema',
        action='store_true',
        help="take the EMA weights ('model_ema') instead of 'model'")
    add_debug_argument(parser)
    return parser.parse_args()


def main():
    args = parse_args()
    if not osp.isfile(args.src):
        raise MissingFileError(
            f"No checkpoint at {args.src!r}. Give the path of one of the "
            "authors' SecViT ImageNet checkpoints (github.com/qhfan/SecViT).")
    key = 'model_ema' if args.ema else 'model'
    state_dict = strip_classifier(
        select_state_dict(
            read_checkpoint(args.src),
            key,
            key_option="--ema ('model_ema') or without it ('model')"))
    arch = infer_arch(state_dict)
    if arch is None:
        raise CheckpointMismatchError(
            f'{args.src} does not hold the weights of any SecViT arch (tiny, '
            'small, base, large); nothing was written. Give one of the '
            "authors' SecViT ImageNet checkpoints.")
    buffer = io.BytesIO()
    torch.save(
        dict(
            state_dict=state_dict,
            meta=dict(source=str(args.src), checkpoint_key=key, arch=arch)),
        buffer)
    atomic_write_bytes(buffer.getvalue(), args.dst)
    print(f'Wrote {len(state_dict)} tensors of SecViT-{arch} ({key!r}) to '
          f'{args.dst}')


if __name__ == '__main__':
    run_tool(main)
