# Copyright (c) mmsecvit contributors. All rights reserved.
"""Registries of mmsecvit.

Each registry is a child of MMEngine's root registry of the same kind, with
the scope ``mmsecvit``. Modules registered here are reachable from mmdet and
mmseg configs with the scope prefix, e.g. ``type='mmsecvit.SecViT'``, once
``custom_imports=dict(imports=['mmsecvit'])`` has imported the package.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

MODELS = Registry(
    'model', parent=MMENGINE_MODELS, locations=['mmsecvit.models'])
MODEL_WRAPPERS = Registry(
    'model_wrapper',
    parent=MMENGINE_MODEL_WRAPPERS,
    locations=['mmsecvit.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['mmsecvit.engine'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['mmsecvit.engine'])
