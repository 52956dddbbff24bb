# Copyright (c) mmsecvit contributors. All rights reserved.
from .archs import TEST_ARCH, arch_literal, arch_with
from .distributed import free_port, run_ranks, spawn_ranks
from .reference_attention import (compare_with_reference_attention,
                                  reference_clustered_attention,
                                  reference_clustered_attention_packed,
                                  reference_sec_order, use_reference_attention)
from .weights import randomize_weights

__all__ = [
    'TEST_ARCH', 'arch_literal', 'arch_with',
    'compare_with_reference_attention', 'free_port', 'randomize_weights',
    'reference_clustered_attention', 'reference_clustered_attention_packed',
    'reference_sec_order', 'run_ranks', 'spawn_ranks',
    'use_reference_attention'
]
