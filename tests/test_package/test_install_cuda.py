# Copyright (c) mmsecvit contributors. All rights reserved.
"""What ``tools/install.sh`` decides about mmcv's CUDA ops
(``tools/install_cuda.sh``), with GPUs faked through the environment."""
import os
import os.path as osp
import subprocess

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LIBRARY = osp.join(REPO_ROOT, 'tools', 'install_cuda.sh')

pytestmark = pytest.mark.skipif(
    not osp.isfile(LIBRARY), reason='needs the checkout')


def _bash(command, **env):
    base = {
        key: value
        for key, value in os.environ.items()
        if key not in ('FORCE_CUDA', 'TORCH_CUDA_ARCH_LIST')
    }
    return subprocess.run(['bash', '-c', f'source {LIBRARY}; {command}'],
                          env=dict(base, **env),
                          capture_output=True,
                          text=True,
                          timeout=120)


def test_arch_list_of_visible_gpus_is_sorted_and_unique():
    result = _bash('arch_list_of 9.0 8.0 8.6 8.0 10.0')
    assert result.stdout.strip() == '8.0;8.6;9.0;10.0'


@pytest.mark.parametrize('torch_cuda, capabilities, env, expected', [
    ('cpu', '8.0', {}, ''),  # a CPU torch builds CPU ops, GPU or not
    ('12.8', '', {}, ''),  # no GPU, no FORCE_CUDA: CPU ops
    ('12.8', '8.6 8.0', {}, '8.0;8.6'),
    ('12.8', '8.6', dict(TORCH_CUDA_ARCH_LIST='7.0;9.0+PTX'), '7.0;9.0+PTX'),
    ('12.8', '', dict(FORCE_CUDA='1', TORCH_CUDA_ARCH_LIST='9.0'), '9.0'),
])
def test_cuda_arch_list_for_mmcv(torch_cuda, capabilities, env, expected):
    result = _bash(f'cuda_arch_list_for_mmcv {torch_cuda} {capabilities}',
                   **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_force_cuda_without_gpu_or_arch_list_says_what_to_set():
    # torch 2.13's extension builder would fail with an IndexError.
    result = _bash('cuda_arch_list_for_mmcv 12.8', FORCE_CUDA='1')
    assert result.returncode == 1
    assert result.stdout == ''
    assert "set TORCH_CUDA_ARCH_LIST" in result.stderr


def test_visible_capabilities_come_from_torch(tmp_path):
    fake = tmp_path / 'python'
    fake.write_text('#!/bin/sh\ncat >/dev/null\necho 8.6\necho 8.0\n')
    fake.chmod(0o755)
    result = _bash('visible_cuda_capabilities', PYTHON=str(fake))
    assert result.stdout.split() == ['8.6', '8.0']


def test_cpu_wheels_keep_their_cache_and_cuda_wheels_get_their_own():
    command = 'mmcv_cache_dir /c 2.1.0 cp311 {} {} "{}"'
    cpu = _bash(command.format('2.13.0', 'cpu', '')).stdout.strip()
    assert cpu == '/c/mmcv-2.1.0-cp311-torch2.13.0'
    cuda = _bash(command.format('2.13.0+cu128', '12.8',
                                '8.0;9.0+PTX')).stdout.strip()
    assert cuda == '/c/mmcv-2.1.0-cp311-torch2.13.0+cu128-cu12.8-sm80_90+PTX'
    other_arch = _bash(command.format('2.13.0+cu128', '12.8',
                                      '8.6')).stdout.strip()
    assert other_arch != cuda
