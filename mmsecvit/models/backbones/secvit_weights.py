# Copyright (c) mmsecvit contributors. All rights reserved.
"""Loading weight files (the authors' ImageNet checkpoints, our own and
mmdet's / mmseg's) into SecViT."""
import argparse
import re
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmengine.runner import CheckpointLoader

from mmsecvit.utils.checkpoint_fit import compare_state_dict, listed_keys
from mmsecvit.utils.errors import CheckpointMismatchError, MissingFileError
from mmsecvit.utils.fileio import load_checkpoint_file
from ..layers import LayerNorm2d

# Parameters of the authors' classification head, absent from the backbone:
# a 1x1 projection, its BatchNorm and the classifier.
CLASSIFIER_KEY = re.compile(r'^(proj|norm|head)\.')
# Output norms exist only in the dense-prediction backbone.
OUTPUT_NORM_KEY = re.compile(r'^norm\d+\.')


def select_state_dict(
        checkpoint: dict,
        checkpoint_key: str = 'model',
        prefix: Optional[str] = None,
        key_option: str = "the backbone's checkpoint_key"
) -> Dict[str, torch.Tensor]:
    """Find the backbone's weights in a loaded checkpoint.

    Accepted layouts: the authors' (``{'model': ..., 'model_ema': ...}``),
    OpenMMLab's (``{'state_dict': ...}``, keys optionally prefixed with
    ``backbone.``, e.g. a whole mmdet detector) and a bare state dict. A
    ``module.`` prefix left by DDP is removed.

    Args:
        checkpoint (dict): The loaded file.
        checkpoint_key (str): 'model' or 'model_ema' for the authors' files.
            Any other key than 'model' must be in the file, or be the one
            a converted file was made from (``meta['checkpoint_key']``):
            the EMA weights asked for are never replaced by the plain ones.
        prefix (str, optional): Keep only the keys under this prefix and
            strip it; with or without the final dot ('backbone' is
            'backbone.', as in MMEngine's ``Pretrained``). Defaults to
            'backbone.' when any key has it.
        key_option (str): How the caller chooses ``checkpoint_key``, for the
            error message.

    Returns:
        dict: The state dict with backbone key names.

    Raises:
        CheckpointMismatchError: If ``checkpoint_key`` is not in the file
            but the file has the authors' entries, or another key than
            'model' was asked for.
    """
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(
            f'Expected a dict in the checkpoint, got {type(checkpoint)}.')
    meta = checkpoint.get('meta')
    converted_key = meta.get('checkpoint_key') if isinstance(meta,
                                                             dict) else None
    if checkpoint_key in checkpoint:
        state_dict = checkpoint[checkpoint_key]
    elif 'state_dict' in checkpoint and checkpoint_key in ('model',
                                                           converted_key):
        # OpenMMLab's layout; for 'model_ema', a file converted from the
        # authors' EMA weights (tools/model_converters, --ema) says so.
        state_dict = checkpoint['state_dict']
    elif (checkpoint_key != 'model' or 'model' in checkpoint
          or 'model_ema' in checkpoint):
        weights = _weight_entries(checkpoint)
        raise CheckpointMismatchError(
            f'The checkpoint has no {checkpoint_key!r} entry; its entries of '
            f'weights are {weights or "none"}. Choose one of them with '
            f'{key_option}.')
    else:
        state_dict = checkpoint
    state_dict = OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in state_dict.items())
    if prefix is None and any(k.startswith('backbone.') for k in state_dict):
        prefix = 'backbone.'
    if prefix:
        if not prefix.endswith('.'):
            prefix += '.'
        state_dict = OrderedDict((k[len(prefix):], v)
                                 for k, v in state_dict.items()
                                 if k.startswith(prefix))
    return state_dict


def _weight_entries(checkpoint: dict) -> List[str]:
    """The entries of a checkpoint that hold a state dict (not the
    optimizer, the epoch, the training arguments...)."""
    return sorted(
        key for key, value in checkpoint.items()
        if isinstance(key, str) and isinstance(value, dict) and value
        and all(isinstance(v, torch.Tensor) for v in value.values()))


def strip_classifier(
        state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop the authors' classification head (``proj``, ``norm``, ``head``)."""
    return OrderedDict(
        (k, v) for k, v in state_dict.items() if not CLASSIFIER_KEY.match(k))


def output_norm_shapes(model: nn.Module) -> Dict[str, torch.Size]:
    """The tensors of every output norm a backbone of ``model``'s arch can
    have (``norm{i}.*`` of each stage ``i``), with their shapes.

    Args:
        model (nn.Module): The backbone; without ``embed_dims`` (not a
            :class:`SecViT`) it has no output norms.

    Returns:
        dict[str, torch.Size]: Shape by key.
    """
    shapes = {}
    for i, channels in enumerate(getattr(model, 'embed_dims', [])):
        with torch.device('meta'):
            norm = LayerNorm2d(channels)
        for name, tensor in norm.state_dict().items():
            shapes[f'norm{i}.{name}'] = tensor.shape
    return shapes


def check_compatible(model: nn.Module, state_dict: Dict[str, torch.Tensor],
                     source: str) -> Tuple[List[str], List[str]]:
    """Raise :class:`CheckpointMismatchError` unless ``state_dict`` holds
    every backbone tensor with the right shape and nothing else.

    Output norms (absent from ImageNet checkpoints) and the RoPE tables
    (fixed, recomputed at construction) may be missing. Output norms the
    model does not have (of stages outside its ``out_indices``, e.g. a
    Mask R-CNN or UperNet checkpoint, which has ``norm0``, loaded into a
    RetinaNet backbone with ``out_indices=(1, 2, 3)``; or all of them with
    ``out_norm=False``) may be surplus, if their shapes fit the arch.

    Args:
        model (nn.Module): The backbone.
        state_dict (dict): The checkpoint's backbone tensors.
        source (str): Where they come from, for the error message.

    Returns:
        tuple[list[str], list[str]]: The keys that may be, and are,
        missing, and the surplus output-norm keys that will be skipped.
    """
    # (compare_state_dict does not count a missing num_batches_tracked:
    # torch's own BatchNorm loads without it.)
    mismatched, missing, surplus = compare_state_dict(model, state_dict)
    norm_shapes = output_norm_shapes(model)
    skipped = [k for k in surplus if k in norm_shapes]
    mismatched += [
        f'{k}: checkpoint {tuple(state_dict[k].shape)} vs '
        f'{tuple(norm_shapes[k])} for the output norm of stage '
        f'{k[len("norm"):k.index(".")]} (not used here)' for k in skipped
        if state_dict[k].shape != norm_shapes[k]
    ]
    unexpected = [k for k in surplus if k not in skipped]
    tolerated = [
        k for k in missing
        if OUTPUT_NORM_KEY.match(k) or k.endswith('RoPE.angle')
    ]
    missing = [k for k in missing if k not in tolerated]
    if state_dict and len(surplus) == len(state_dict):
        first = ', '.join(list(state_dict)[:3])
        raise CheckpointMismatchError(
            f'The checkpoint {source} holds no tensor of a SecViT backbone: '
            f'none of its {len(state_dict)} tensors has a backbone name '
            f'(e.g. {first}). If its backbone tensors are under a prefix, '
            "give it (init_cfg=dict(type='Pretrained', checkpoint=..., "
            "prefix='backbone.')); else choose another checkpoint.")
    if not state_dict:
        raise CheckpointMismatchError(
            f'The checkpoint {source} holds no tensors (under the prefix '
            'given, if one was). Check the prefix, or choose another '
            'checkpoint.')
    if mismatched or unexpected or missing:
        arch = getattr(model, 'arch_settings', {})
        lines = [
            f'The checkpoint {source} does not match this SecViT '
            f'(embed_dims={arch.get("embed_dims")}, depths='
            f'{arch.get("depths")}).'
        ]
        for title, items in (('tensors with other shapes', mismatched),
                             ('tensors the model lacks', unexpected),
                             ('model tensors missing', missing)):
            if items:
                lines.append(listed_keys(title, items))
        lines.append("Pick the arch the checkpoint was trained with "
                     "('tiny', 'small', 'base' or 'large': "
                     'model.backbone.arch in a config, --arch in the tools), '
                     'or another checkpoint.')
        raise CheckpointMismatchError(' '.join(lines))
    return tolerated, skipped


def read_checkpoint(filename: str) -> dict:
    """Load a checkpoint safely (``weights_only``), from a local path or,
    through MMEngine's loaders, from a URL.

    Raises:
        FileNotFoundError: For a missing local file, with what to do.
    """
    if '://' in str(filename):
        return CheckpointLoader.load_checkpoint(filename, map_location='cpu')
    try:
        # The authors' training script stores its argparse.Namespace under
        # 'args'; that plain attribute container is safe to rebuild.
        with torch.serialization.safe_globals([argparse.Namespace]):
            return load_checkpoint_file(filename, map_location='cpu')
    except FileNotFoundError as error:
        raise MissingFileError(
            f'SecViT pretrained checkpoint not found: {filename}. Download '
            "the authors' ImageNet weights (github.com/qhfan/SecViT) and "
            'point to the file with --cfg-options '
            'model.backbone.init_cfg.checkpoint=PATH (or the environment '
            'variable the config names), or train from scratch with '
            '--cfg-options model.backbone.init_cfg=None.') from error


def load_pretrained_backbone(model: nn.Module,
                             filename: str,
                             checkpoint_key: str = 'model',
                             prefix: Optional[str] = None) -> None:
    """Load an ImageNet (or mmsecvit / mmdet / mmseg) checkpoint into a
    :class:`SecViT` and log what was left out.

    Args:
        model (nn.Module): The backbone.
        filename (str): Path or URL of the checkpoint.
        checkpoint_key (str): 'model' or 'model_ema' for the authors' files.
        prefix (str, optional): See :func:`select_state_dict`.

    Raises:
        CheckpointMismatchError: If the checkpoint is of another arch.
    """
    logger = MMLogger.get_current_instance()
    state_dict = strip_classifier(
        select_state_dict(read_checkpoint(filename), checkpoint_key, prefix))
    left_out, skipped = check_compatible(model, state_dict, repr(filename))
    for key in skipped:
        del state_dict[key]
    model.load_state_dict(state_dict, strict=False)
    logger.info(f'Loaded {len(state_dict)} backbone tensors from '
                f'{filename} ({checkpoint_key!r} when present).')
    if left_out:
        logger.info('Not in the checkpoint, initialised here: ' +
                    ', '.join(left_out))
    if skipped:
        logger.info('Output norms this backbone does not have (see its '
                    'out_indices and out_norm), skipped: ' +
                    ', '.join(skipped))
