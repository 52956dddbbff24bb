# Copyright (c) mmsecvit contributors. All rights reserved.
"""MMEngine's ``compile`` config: the compiled train step traces the
optimizer step once the param groups are plain dicts."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapperDict, build_optim_wrapper

from mmsecvit.engine import PlainParamGroupsHook
from mmsecvit.engine.tool_config import compile_enabled, enable_compile_support

OPTIM_WRAPPER = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0))


def build_wrapper():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))
    return model, build_optim_wrapper(model, ConfigDict(OPTIM_WRAPPER))


def test_groups_become_plain_dicts_with_the_same_contents():
    model, wrapper = build_wrapper()
    groups = wrapper.optimizer.param_groups
    assert any(isinstance(group, ConfigDict) for group in groups)
    before = [dict(group) for group in groups]
    PlainParamGroupsHook().before_train(SimpleNamespace(optim_wrapper=wrapper))
    assert all(type(group) is dict for group in groups)
    assert groups is wrapper.optimizer.param_groups  # the same list
    assert groups == before
    # Several optimizers (OptimWrapperDict) are covered too.
    _, other = build_wrapper()
    both = OptimWrapperDict(a=build_wrapper()[1], b=other)
    PlainParamGroupsHook().before_train(SimpleNamespace(optim_wrapper=both))
    assert all(
        type(group) is dict for wrapper in both.values()
        for group in wrapper.optimizer.param_groups)


def test_a_compiled_train_step_runs_the_optimizer_step():
    """``eager`` backend: Dynamo's tracing without code generation, which
    is where the ConfigDict groups fail."""
    model, wrapper = build_wrapper()
    x = torch.randn(5, 4)

    def train_step():
        wrapper.update_params(model(x).square().mean())

    compiled = torch.compile(train_step, backend='eager')
    torch._dynamo.reset()
    # Dynamo's name for the ConfigDict differs between torch releases
    # (UserDefinedDictVariable; MutableMappingVariable in 2.5).
    with pytest.raises(Exception,
                       match='UserDefinedDictVariable|MutableMappingVariable'):
        compiled()
    torch._dynamo.reset()
    model, wrapper = build_wrapper()
    PlainParamGroupsHook().before_train(SimpleNamespace(optim_wrapper=wrapper))
    expected_model, expected_wrapper = build_wrapper()
    compiled = torch.compile(train_step, backend='eager')
    for _ in range(2):
        compiled()
        expected_wrapper.update_params(
            expected_model(x).square().mean())
    for a, b in zip(model.parameters(), expected_model.parameters()):
        torch.testing.assert_close(a, b)
    torch._dynamo.reset()


@pytest.mark.parametrize('option,enabled', [(None, False), (False, False),
                                            (True, True),
                                            (dict(dynamic=True), True),
                                            (dict(disable=True), False)])
def test_the_hook_is_added_when_the_config_compiles(option, enabled):
    cfg = Config(dict(custom_hooks=[dict(type='SomeHook')]))
    if option is not None:
        cfg.compile = option
    assert compile_enabled(cfg) is enabled
    enable_compile_support(cfg)
    enable_compile_support(cfg)  # at most once
    types = [hook['type'] for hook in cfg.custom_hooks]
    expected = ['SomeHook'] + (['mmsecvit.PlainParamGroupsHook']
                               if enabled else [])
    assert types == expected
