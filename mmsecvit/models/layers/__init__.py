# Copyright (c) mmsecvit contributors. All rights reserved.
from .conv_fusion import (conv_norm, conv_plus_identity, fold_conv_norm,
                          residual_conv_, scaled_conv_params)
from .cpu_fusion import (add_scaled_, conv2d_add_, conv2d_gelu, fusion_applies,
                         gelu_, has_module_hooks, onednn_fusion)
from .depthwise_conv import depthwise_conv2d
from .norm import BATCH_NORMS, LayerNorm2d, batch_norm
from .param_cache import cached_derivation, clear_derived_params
from .rope import RoPE2d, apply_rope
from .sec_attention import (SECAttention, clustered_attention,
                            clustered_attention_traceable,
                            forced_cluster_orders, record_cluster_assignments,
                            resolve_cluster_length, sec_attention_modules,
                            sec_order)

__all__ = [
    'BATCH_NORMS', 'LayerNorm2d', 'RoPE2d', 'batch_norm', 'apply_rope',
    'SECAttention', 'clustered_attention', 'clustered_attention_traceable',
    'conv_norm', 'conv_plus_identity', 'record_cluster_assignments',
    'resolve_cluster_length', 'sec_order', 'conv2d_add_', 'conv2d_gelu',
    'fold_conv_norm', 'fusion_applies', 'onednn_fusion', 'scaled_conv_params',
    'add_scaled_', 'gelu_', 'has_module_hooks', 'residual_conv_',
    'cached_derivation', 'clear_derived_params', 'depthwise_conv2d',
    'forced_cluster_orders', 'sec_attention_modules'
]
