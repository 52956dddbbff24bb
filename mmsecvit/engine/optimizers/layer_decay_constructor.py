# Copyright (c) mmsecvit contributors. All rights reserved.
"""Layer-wise learning-rate decay for models with a SecViT backbone."""
from collections import defaultdict
from typing import List

from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from mmsecvit.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmsecvit.utils.errors import ConfigTypeError, ConfigValueError


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper constructor with layer-wise learning-rate decay.

    Every parameter first gets the learning rate and weight decay of
    :class:`mmengine.optim.DefaultOptimWrapperConstructor` (``custom_keys``,
    ``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult``, ...).
    Its learning rate is then multiplied by
    ``layer_decay_rate ** (num_layers - layer_id - 1)``, where
    ``(layer_id, num_layers)`` comes from the backbone's
    ``get_layer_depth(name)``: the stem learns slowest, each block a little
    faster than the one before it, and everything outside the backbone
    (neck, heads) at the full learning rate.

    ``paramwise_cfg`` takes, besides the keys of the default constructor:

    - ``layer_decay_rate`` (float): Required, in (0, 1]. 1 disables decay.

    Args:
        optim_wrapper_cfg (dict): The config of the optimizer wrapper, with
            ``optimizer.lr`` set.
        paramwise_cfg (dict): Parameter-wise options, see above.

    Examples:
        >>> # in a config
        >>> optim_wrapper = dict(
        ...     constructor='mmsecvit.LayerDecayOptimWrapperConstructor',
        ...     optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.05),
        ...     paramwise_cfg=dict(
        ...         layer_decay_rate=0.9, norm_decay_mult=0.,
        ...         bias_decay_mult=0., flat_decay_mult=0.))
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict = None):
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        rate = self.paramwise_cfg.get('layer_decay_rate')
        if rate is None:
            raise ConfigValueError(
                'LayerDecayOptimWrapperConstructor needs '
                '`paramwise_cfg.layer_decay_rate`, e.g. 0.9; use '
                'DefaultOptimWrapperConstructor for no layer-wise decay.')
        if not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ConfigValueError(
                '`paramwise_cfg.layer_decay_rate` must be a '
                f'number in (0, 1], got {rate!r}.')
        if self.base_lr is None:
            raise ConfigValueError(
                'Layer-wise lr decay scales `optimizer.lr`; set '
                'it in the config of the optimizer.')
        self.layer_decay_rate = float(rate)

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   **kwargs) -> None:
        """Add the parameters of ``module`` to ``params`` with layer-wise
        learning rates.

        Args:
            params (list[dict]): The parameter groups, extended in place.
            module (nn.Module): The module whose parameters are added.
            prefix (str): The name of ``module`` in the whole model.
        """
        super().add_params(params, module, prefix, **kwargs)
        # The default constructor recurses through this method; decay the
        # groups once, when the call for the whole model returns.
        if prefix == '':
            self._decay_by_layer(params, module)

    def _decay_by_layer(self, params: List[dict], model: nn.Module) -> None:
        """Scale the learning rate of every group by its layer's decay."""
        if is_model_wrapper(model):
            model = model.module
        backbone, backbone_prefix = self._find_backbone(model)
        names = {id(p): name for name, p in model.named_parameters()}
        per_layer = defaultdict(list)
        for group in params:
            # The default constructor makes one group per parameter.
            name = names[id(group['params'][0])]
            layer_id, num_layers = backbone.get_layer_depth(
                name, prefix=backbone_prefix)
            scale = self.layer_decay_rate**(num_layers - layer_id - 1)
            group['lr'] = group.get('lr', self.base_lr) * scale
            per_layer[(layer_id, num_layers)].append(name)
        for (layer_id, num_layers), layer_names in sorted(per_layer.items()):
            scale = self.layer_decay_rate**(num_layers - layer_id - 1)
            print_log(
                f'layer-wise lr decay: layer {layer_id} of {num_layers}, '
                f'lr x {scale:.3g} for {len(layer_names)} parameters',
                logger='current')

    @staticmethod
    def _find_backbone(model: nn.Module):
        """Return the module that defines ``get_layer_depth`` and the prefix
        of its parameter names in ``model``."""
        if hasattr(model, 'get_layer_depth'):
            return model, ''
        backbone = getattr(model, 'backbone', None)
        if backbone is None or not hasattr(backbone, 'get_layer_depth'):
            raise ConfigTypeError(
                'Layer-wise lr decay needs a model with a `backbone` that '
                'defines `get_layer_depth(param_name, prefix)` (such as '
                f'mmsecvit.SecViT); got {type(model).__name__} with backbone '
                f'{type(backbone).__name__}.')
        return backbone, 'backbone.'
