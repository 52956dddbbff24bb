# Copyright (c) mmsecvit contributors. All rights reserved.
"""Let MMEngine's ``compile`` config trace the optimizer step."""
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapperDict

from mmsecvit.registry import HOOKS


@HOOKS.register_module()
class PlainParamGroupsHook(Hook):
    """Turn the optimizer's param groups into plain dicts before training.

    With ``compile = dict(...)`` in a config, MMEngine's Runner compiles the
    model's ``train_step``, which includes the optimizer step. MMEngine's
    optimizer wrapper constructors pass the param groups to the optimizer
    inside its ConfigDict, so every group is a ConfigDict, and TorchDynamo
    (torch 2.13) fails on the first step: ``InternalTorchDynamoError:
    AttributeError: 'UserDefinedDictVariable' object has no attribute
    'items'`` in ``torch/optim/adamw.py``. The groups' contents stay as they
    are; only their type changes. ``tools/train.py`` adds this hook to
    every config that sets ``compile``.

    It runs before the first iteration (``before_train``), after a resumed
    optimizer state was loaded.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        optim_wrapper = runner.optim_wrapper
        wrappers = (
            optim_wrapper.values()
            if isinstance(optim_wrapper, OptimWrapperDict) else
            [optim_wrapper])
        for wrapper in wrappers:
            groups = wrapper.optimizer.param_groups
            for index, group in enumerate(groups):
                if type(group) is not dict:
                    groups[index] = dict(group)
