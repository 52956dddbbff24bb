# Copyright (c) mmsecvit contributors. All rights reserved.
from mmsecvit.models import SecViT, parse_arch
from mmsecvit.testing import TEST_ARCH, arch_literal, arch_with


def test_arch_with_changes_a_copy():
    arch = arch_with(depths=[1, 2, 1, 1])
    assert arch['depths'] == [1, 2, 1, 1]
    assert TEST_ARCH['depths'] == [1, 1, 1, 1]
    arch['embed_dims'].append(0)
    assert len(TEST_ARCH['embed_dims']) == 4


def test_arch_literal_reads_back_and_builds():
    assert parse_arch(arch_literal()) == TEST_ARCH
    assert arch_literal(_delete_=True).startswith('dict(_delete_=True, ')
    assert isinstance(SecViT(arch=parse_arch(arch_literal())), SecViT)
