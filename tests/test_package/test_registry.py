# Copyright (c) mmsecvit contributors. All rights reserved.
"""Every kind mmsecvit registers has a child registry of MMEngine's, and the
names configs use find the classes."""
import mmengine.registry as mmengine_registry
import pytest
from mmdet.registry import LOOPS as MMDET_LOOPS
from mmdet.registry import OPTIM_WRAPPERS as MMDET_OPTIM_WRAPPERS

import mmsecvit.registry as registry
from mmsecvit.engine import (BF16AutocastOptimWrapper, ClusterVisHook,
                             DeviceAwareDistributedDataParallel,
                             LayerDecayOptimWrapperConstructor,
                             ResumableCheckpointHook,
                             ResumableEpochBasedTrainLoop)
from mmsecvit.models import SecViT

KINDS = ('MODELS', 'MODEL_WRAPPERS', 'OPTIM_WRAPPERS',
         'OPTIM_WRAPPER_CONSTRUCTORS', 'HOOKS', 'LOOPS')


@pytest.mark.parametrize('kind', KINDS)
def test_child_of_mmengine_registry_with_the_mmsecvit_scope(kind):
    child = getattr(registry, kind)
    assert child.scope == 'mmsecvit'
    assert child.parent is getattr(mmengine_registry, kind)


@pytest.mark.parametrize('kind, cls', [
    ('MODELS', SecViT),
    ('MODEL_WRAPPERS', DeviceAwareDistributedDataParallel),
    ('OPTIM_WRAPPERS', BF16AutocastOptimWrapper),
    ('OPTIM_WRAPPER_CONSTRUCTORS', LayerDecayOptimWrapperConstructor),
    ('HOOKS', ClusterVisHook),
    ('HOOKS', ResumableCheckpointHook),
    ('LOOPS', ResumableEpochBasedTrainLoop),
])
def test_scoped_names_find_the_class(kind, cls):
    assert getattr(registry, kind).get(cls.__name__) is cls
    root = getattr(mmengine_registry, kind)
    assert root.get(f'mmsecvit.{cls.__name__}') is cls


@pytest.mark.parametrize('codebase_registry, cls', [
    (MMDET_LOOPS, ResumableEpochBasedTrainLoop),
    (MMDET_OPTIM_WRAPPERS, BF16AutocastOptimWrapper),
])
def test_bare_names_of_older_configs_still_build(codebase_registry, cls):
    # What the Runner looks up under an mmdet (or mmseg) default scope.
    assert codebase_registry.get(cls.__name__) is cls
    assert codebase_registry.get(f'mmsecvit.{cls.__name__}') is cls
