# Copyright (c) mmsecvit contributors. All rights reserved.
"""Build a SecViT backbone to look at, from an arch name and a checkpoint."""
import ast
from typing import Optional, Union

import torch

from mmsecvit.models import SecViT


def parse_arch(arch: str) -> Union[str, dict]:
    """Read an arch given on a command line.

    Args:
        arch (str): An arch name of ``SecViT.arch_zoo`` ('t', 'small', ...)
            or a Python dict literal such as ``"dict(embed_dims=[...], ...)"``
            or ``"{'embed_dims': [...], ...}"``.

    Returns:
        str | dict: What :class:`SecViT` takes as ``arch``.
    """
    text = arch.strip()
    if text.startswith('dict(') and text.endswith(')'):
        call = ast.parse(text, mode='eval').body
        try:
            return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except ValueError as err:
            raise ValueError(f'Cannot read the arch {arch!r}: the values of '
                             f'dict(...) must be literals.') from err
    if text.startswith('{'):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as err:
            raise ValueError(f'Cannot read the arch {arch!r} as a dict '
                             f'literal.') from err
        return value
    if text.lower() not in SecViT.arch_zoo:
        raise ValueError(f'Unknown SecViT arch {arch!r}; choose one of '
                         f'{sorted(SecViT.arch_zoo)} or give a dict.')
    return text.lower()


def build_vis_backbone(arch: Union[str, dict] = 'small',
                       checkpoint: Optional[str] = None,
                       cluster_mode: str = 'num_clusters',
                       cluster_size: int = 98,
                       seed: int = 0,
                       device: str = 'cpu') -> SecViT:
    """A SecViT in eval mode, with trained or random weights.

    Args:
        arch (str | dict): See :class:`SecViT`.
        checkpoint (str, optional): An authors' ImageNet checkpoint or an
            mmsecvit / mmdet / mmseg one (the ``backbone.`` keys are taken).
            None keeps the authors' random initialisation.
        cluster_mode (str): See :class:`SecViT`.
        cluster_size (int): See :class:`SecViT`.
        seed (int): Seed of the random initialisation, so that two calls
            with the same arguments give the same model.
        device (str): Device to put the model on.

    Returns:
        SecViT: The backbone in eval mode.
    """
    init_cfg = None if checkpoint is None else dict(
        type='Pretrained', checkpoint=checkpoint)
    torch.manual_seed(seed)
    # Output norms as in the detection configs, so that their checkpoints
    # load without unexpected keys; they act after the attention and do
    # not change the clusters.
    model = SecViT(
        arch=arch,
        cluster_mode=cluster_mode,
        cluster_size=cluster_size,
        drop_path_rate=0.,
        init_cfg=init_cfg)
    model.init_weights()
    return model.to(device).eval()
