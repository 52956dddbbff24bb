# Copyright (c) mmsecvit contributors. All rights reserved.
"""The small SecViT arch that tests and examples build in a fraction of a
second: every stage one block, few channels, real clustering in the first
three stages and global attention in the last, as in the released models."""
import copy

TEST_ARCH = dict(
    embed_dims=[32, 64, 128, 256],
    depths=[1, 1, 1, 1],
    num_heads=[1, 2, 4, 8],
    num_clusters=[4, 2, 2, -1])


def arch_with(**changes) -> dict:
    """A copy of :data:`TEST_ARCH` with ``changes`` applied.

    Examples:
        >>> arch_with(depths=[1, 2, 1, 1])['depths']
        [1, 2, 1, 1]
    """
    arch = copy.deepcopy(TEST_ARCH)
    arch.update(changes)
    return arch


def arch_literal(arch: dict = TEST_ARCH, **extra) -> str:
    """``arch`` written as a ``dict(...)`` literal, for command lines and
    config text; ``extra`` keys (e.g. ``_delete_=True``) come first.

    Examples:
        >>> arch_literal(_delete_=True)[:25]
        'dict(_delete_=True, embed'
    """
    items = {**extra, **arch}
    return 'dict(' + ', '.join(f'{k}={v!r}' for k, v in items.items()) + ')'
