# Copyright (c) mmsecvit contributors. All rights reserved.
"""FLOPs of backbones and whole detectors / segmentors.

Counts with mmengine's :class:`~mmengine.analysis.FlopAnalyzer` (fvcore's
convention: one multiply-add is one FLOP) and adds what it misses:
``aten::scaled_dot_product_attention``, through which SecViT computes all its
attention. For an SDPA call with queries (..., L, E), keys (..., S, E) and
values (..., S, Ev) the count is ``prod(...) * L * S * (E + Ev)``: the two
matrix products ``q k^T`` and ``attn v``. Softmax, scaling, RoPE, the
token sort and other element-wise work are not counted (neither are they by
mmengine for any other model), so the figures compare with the papers'
``GFLOPs`` columns, which follow the same convention.
"""
import os.path as osp
from math import prod
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from mmsecvit.models import SecViT
from mmsecvit.utils.errors import ConfigValueError, MissingFileError

SDPA_OPS = ('aten::scaled_dot_product_attention', )


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """FLOPs (multiply-adds) of one ``scaled_dot_product_attention``."""
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(value) for value in inputs[:3])
    batch = prod(q[:-2])
    return batch * q[-2] * k[-2] * (q[-1] + v[-1])


def count_flops(model: nn.Module,
                inputs: Tuple[Any, ...],
                count_attention: bool = True) -> Dict[str, Any]:
    """Count the FLOPs of ``model(*inputs)``.

    Args:
        model (nn.Module): The model, in eval mode.
        inputs (tuple): Positional inputs of its forward.
        count_attention (bool): Count ``scaled_dot_product_attention``.
            False shows what mmengine's counter gives on its own.

    Returns:
        dict: ``total`` (int), ``attention`` (int: the part of ``total``
        counted for ``scaled_dot_product_attention``, 0 without
        ``count_attention``; ``total - attention`` is what mmengine's
        counter gives on its own), ``by_module`` (dict of name to FLOPs),
        ``unsupported`` (dict of op name to calls that were not counted),
        ``params`` (int).
    """
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(model, inputs)
    if count_attention:
        analyzer.set_op_handle(
            **{op: sdpa_flop_jit
               for op in SDPA_OPS})
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    by_operator = analyzer.by_operator()
    return dict(
        total=analyzer.total(),
        # by_operator names an op without its namespace.
        attention=sum(
            by_operator.get(op.split('::')[-1], 0) for op in SDPA_OPS),
        by_module=dict(analyzer.by_module()),
        unsupported=dict(analyzer.unsupported_ops()),
        params=sum(p.numel() for p in model.parameters()))


def backbone_flops(arch: Any = 'small',
                   size: Tuple[int, int] = (224, 224),
                   count_attention: bool = True,
                   **kwargs) -> Dict[str, Any]:
    """FLOPs of a SecViT backbone for one image of ``size``.

    Args:
        arch (str | dict): SecViT arch.
        size (tuple[int, int]): Input height and width.
        count_attention (bool): See :func:`count_flops`.
        **kwargs: Further :class:`~mmsecvit.models.SecViT` arguments (e.g.
            ``cluster_mode``).
    """
    model = SecViT(arch=arch, **kwargs).eval()
    with torch.no_grad():
        return count_flops(model, (torch.rand(1, 3, *size), ),
                           count_attention)


class _ForwardWithSamples(nn.Module):
    """``model._forward(inputs, data_samples)`` as a one-input module, as
    mmdet's and mmseg's get_flops tools do."""

    def __init__(self, model: nn.Module, data_samples: list) -> None:
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor):
        return self.model._forward(inputs, self.data_samples)


def _dummy_samples(scope: str, size: Tuple[int, int]) -> list:
    h, w = size
    meta = dict(
        img_shape=(h, w),
        ori_shape=(h, w),
        pad_shape=(h, w),
        batch_input_shape=(h, w),
        scale_factor=(1., 1.))
    if scope == 'mmseg':
        from mmseg.structures import SegDataSample
        return [SegDataSample(metainfo=meta)]
    from mmdet.structures import DetDataSample
    return [DetDataSample(metainfo=meta)]


def model_flops(config: str,
                size: Tuple[int, int],
                cfg_options: Optional[dict] = None,
                count_attention: bool = True,
                seed: int = 0) -> Dict[str, Any]:
    """FLOPs of a whole detector or segmentor built from a config.

    Pretrained weights are not loaded (``init_cfg`` of the backbone is
    dropped); the network runs ``_forward`` (no post-processing) on one
    image of ``size``. Use a size divisible by 32, as the data
    preprocessors pad to. The random weights and image come from ``seed``
    (the caller's random state is left as it was): a two-stage detector's
    RoI head runs on the proposals that survive the RPN's NMS, which depend
    on them, so the same seed gives the same count.

    Args:
        config (str): Config file.
        size (tuple[int, int]): Input height and width.
        cfg_options (dict, optional): Overrides merged into the config.
        count_attention (bool): See :func:`count_flops`.
        seed (int): Of the random weights and image.

    Returns:
        dict: As :func:`count_flops`, plus ``backbone`` (the FLOPs of the
        ``backbone`` module alone).
    """
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    if not osp.isfile(config):
        raise MissingFileError(f'Config file not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    if 'init_cfg' in cfg.model.get('backbone', {}):
        cfg.model.backbone.init_cfg = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODELS.build(cfg.model).eval()
        image = torch.rand(1, 3, *size)
    wrapped = _ForwardWithSamples(model, _dummy_samples(scope, size))
    try:
        with torch.no_grad():
            result = count_flops(wrapped, (image, ), count_attention)
    except TypeError as error:
        if 'required positional argument' not in str(error):
            raise
        # E.g. mmseg's Mask2Former: its head needs data samples that the
        # segmentor's plain ``_forward`` does not pass.
        raise ConfigValueError(
            f'The FLOPs of {config} cannot be counted by a plain forward '
            f"of its model ({error}). Count its backbone with --archs "
            'instead.') from error
    result['backbone'] = result['by_module'].get('model.backbone', 0)
    return result
