# Copyright (c) mmsecvit contributors. All rights reserved.
"""Whether a checkpoint's weights fit a model, checked before they load.

MMEngine loads a whole-model checkpoint non-strictly: tensors of other
shapes, missing ones and surplus ones are logged as warnings, and the run
goes on with random weights where the checkpoint had none that fit. A
checkpoint of another arch or another detector then evaluates to an mAP of
0 and exits 0, or a resumed run trains from random weights with the
restored optimizer. :func:`check_checkpoint_fits` turns that into one
:class:`~mmsecvit.utils.errors.CheckpointMismatchError` that names the
tensors, by what the checkpoint is for (:data:`PURPOSES`).
"""
import logging
from collections import OrderedDict
from typing import Dict, List, Mapping, Tuple

import torch
import torch.nn as nn
from mmengine.logging import print_log

from .errors import CheckpointMismatchError, ConfigValueError

#: What a checkpoint is loaded for:
#:
#: - ``'evaluate'``: testing, inference, export: every tensor of the model,
#:   of its shape, and nothing else.
#: - ``'resume'``: the same, and the training state MMEngine resumes from
#:   (``meta`` with the epoch and iteration, ``message_hub``; without
#:   ``optimizer``, e.g. saved with ``CheckpointHook(save_optimizer=False)``,
#:   the optimizer starts afresh, with a warning).
#: - ``'fine_tune'``: ``load_from`` for a new training run: the backbone's
#:   tensors must have the model's shapes, and some tensor of the model
#:   must be there; heads of other shapes (another number of classes) are
#:   left to MMEngine, which skips them with a warning.
PURPOSES = ('evaluate', 'resume', 'fine_tune')

#: What a checkpoint needs to be resumed from, besides the weights.
RESUME_KEYS = ('meta', 'message_hub')


def checkpoint_state_dict(checkpoint: Mapping) -> Dict[str, torch.Tensor]:
    """The model weights of a loaded checkpoint (its ``state_dict`` entry,
    or the checkpoint itself), without the ``module.`` prefix of DDP."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    return OrderedDict(
        (key[len('module.'):] if key.startswith('module.') else key, value)
        for key, value in state_dict.items()
        if isinstance(value, torch.Tensor))


def compare_state_dict(
        model: nn.Module, state_dict: Mapping[str, torch.Tensor]
) -> Tuple[List[str], List[str], List[str]]:
    """How ``state_dict`` differs from ``model.state_dict()``.

    Returns:
        tuple[list[str], list[str], list[str]]: The tensors of other shapes
        (``'key: checkpoint (..) vs model (..)'``), the model's tensors the
        checkpoint lacks (not counting BatchNorm's ``num_batches_tracked``,
        which MMEngine does not miss either: older checkpoints lack it),
        and the checkpoint's tensors the model lacks.
    """
    own = model.state_dict()
    mismatched = [
        f'{key}: checkpoint {tuple(value.shape)} vs model '
        f'{tuple(own[key].shape)}' for key, value in state_dict.items()
        if key in own and value.shape != own[key].shape
    ]
    missing = [
        key for key in own if key not in state_dict
        and not key.endswith('num_batches_tracked')
    ]
    unexpected = [key for key in state_dict if key not in own]
    return mismatched, missing, unexpected


def listed_keys(title: str, items: List[str]) -> str:
    """``'N title: a, b, c, d, e and M more.'``: the first five items of a
    list of tensor names, for an error message."""
    shown = ', '.join(items[:5])
    more = f' and {len(items) - 5} more' if len(items) > 5 else ''
    return f'{len(items)} {title}: {shown}{more}.'


def check_checkpoint_fits(model: nn.Module, checkpoint: Mapping, source: str,
                          purpose: str) -> None:
    """Raise :class:`~mmsecvit.utils.errors.CheckpointMismatchError` where
    ``checkpoint`` does not fit ``model`` for ``purpose``.

    Args:
        model (nn.Module): The model built from the config (unwrapped).
        checkpoint (Mapping): The loaded checkpoint file.
        source (str): Where it comes from, for the message.
        purpose (str): One of :data:`PURPOSES`.
    """
    if purpose not in PURPOSES:
        raise ConfigValueError(
            f'Unknown checkpoint purpose {purpose!r}; use one of {PURPOSES}.')
    state_dict = checkpoint_state_dict(checkpoint)
    mismatched, missing, unexpected = compare_state_dict(model, state_dict)
    if purpose == 'fine_tune':
        mismatched = [m for m in mismatched if m.startswith('backbone.')]
        nothing = not any(key in state_dict for key in model.state_dict())
        missing = missing if nothing else []
        unexpected = []
    problems = [
        listed_keys(title, items)
        for title, items in (('tensors with other shapes', mismatched),
                             ('model tensors missing', missing),
                             ('tensors the model lacks', unexpected)) if items
    ]
    if problems:
        raise CheckpointMismatchError(
            f'The checkpoint {source} does not fit the model of this config. '
            + ' '.join(problems) +
            " Use the config the checkpoint was trained with (its arch, "
            "head and number of classes), or a checkpoint of this config's "
            'model. A backbone-only (e.g. ImageNet) checkpoint goes into '
            "model.backbone.init_cfg=dict(type='Pretrained', "
            'checkpoint=PATH), not here.')
    if purpose == 'resume':
        absent = [key for key in RESUME_KEYS if key not in checkpoint]
        meta = checkpoint.get('meta')
        if not absent and not (isinstance(meta, Mapping) and 'epoch' in meta
                               and 'iter' in meta):
            absent.append('meta.epoch/meta.iter')
        if absent:
            raise CheckpointMismatchError(
                f'The checkpoint {source} holds weights but no training '
                f'state to resume from (no {", ".join(absent)}), e.g. a '
                'published or converted checkpoint. To train from these '
                'weights, give them as --cfg-options load_from=PATH '
                'instead of resuming from them (--resume PATH, or --resume '
                "alone, which takes the work dir's newest checkpoint).")
        if 'optimizer' not in checkpoint:
            print_log(
                f'The checkpoint {source} has no optimizer state (saved '
                'with save_optimizer=False?): training resumes with a new '
                "optimizer state (e.g. SGD's momentum and AdamW's moments "
                'start from zero).',
                logger='current',
                level=logging.WARNING)
