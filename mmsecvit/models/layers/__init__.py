# Copyright (c) mmsecvit contributors. All rights reserved.
from .conv_fusion import conv_norm, conv_plus_identity
from .norm import BATCH_NORMS, LayerNorm2d, batch_norm
from .rope import RoPE2d, apply_rope
from .sec_attention import (SECAttention, clustered_attention,
                            clustered_attention_traceable,
                            record_cluster_assignments, resolve_cluster_length,
                            sec_order)

__all__ = [
    'BATCH_NORMS', 'LayerNorm2d', 'RoPE2d', 'batch_norm', 'apply_rope',
    'SECAttention', 'clustered_attention', 'clustered_attention_traceable',
    'conv_norm', 'conv_plus_identity', 'record_cluster_assignments',
    'resolve_cluster_length', 'sec_order'
]
