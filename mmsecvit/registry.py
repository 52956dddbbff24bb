# Copyright (c) mmsecvit contributors. All rights reserved.
"""Registries of mmsecvit.

Each registry is a child of MMEngine's root registry of the same kind, with
the scope ``mmsecvit``, for every kind of module mmsecvit registers. They are
reachable from mmdet and mmseg configs with the scope prefix, e.g.
``type='mmsecvit.SecViT'``, once ``custom_imports=dict(imports=['mmsecvit'])``
has imported the package.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import Registry

# Backbones.
MODELS = Registry(
    'model', parent=MMENGINE_MODELS, locations=['mmsecvit.models'])
# Wrappers of the model for distributed training.
MODEL_WRAPPERS = Registry(
    'model_wrapper',
    parent=MMENGINE_MODEL_WRAPPERS,
    locations=['mmsecvit.engine'])
# Optimizer wrappers (mixed precision).
OPTIM_WRAPPERS = Registry(
    'optim_wrapper',
    parent=MMENGINE_OPTIM_WRAPPERS,
    locations=['mmsecvit.engine'])
# Builders of optimizer wrappers (layer-wise lr decay).
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['mmsecvit.engine'])
# Hooks.
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['mmsecvit.engine'])
# Training loops.
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, locations=['mmsecvit.engine'])
