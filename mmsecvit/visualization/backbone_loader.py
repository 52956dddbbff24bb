# Copyright (c) mmsecvit contributors. All rights reserved.
"""Build a SecViT backbone to look at, from an arch name and a checkpoint."""
from typing import Optional, Union

import torch

from mmsecvit.models import SecViT


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
