# Copyright (c) mmsecvit contributors. All rights reserved.
"""End to end: ``tools/dist_train.sh`` with 2 CPU processes (gloo) on the
synthetic ADE20K data and the small SecViT arch."""
import os
import os.path as osp
import subprocess

import pytest
import torch

from mmsecvit.datasets.demo import make_demo_data
from mmsecvit.testing import TEST_ARCH, arch_literal, free_port
from mmsecvit.utils import load_checkpoint_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(REPO, 'configs/demo/upernet_secvit-s_demo-ade.py')

SMALL_CONFIG = f"""
_base_ = {{base!r}}
data_root = {{data_root!r}}
model = dict(
    backbone=dict(arch={arch_literal(_delete_=True)}),
    decode_head=dict(in_channels={TEST_ARCH['embed_dims']}),
    auxiliary_head=dict(in_channels=128))
train_dataloader = dict(num_workers=0, dataset=dict(data_root=data_root))
val_dataloader = dict(num_workers=0, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=100)
default_hooks = dict(checkpoint=dict(interval=2))
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU path')
def test_two_process_gloo_training_on_demo_data(tmp_path):
    make_demo_data(str(tmp_path / 'data'), num_train=8, num_val=2, coco=False)
    config = tmp_path / 'small.py'
    config.write_text(
        SMALL_CONFIG.format(
            base=DEMO_CONFIG,
            data_root=str(tmp_path / 'data/ade/ADEChallengeData2016')))
    port = free_port()
    work_dir = tmp_path / 'work'
    result = subprocess.run([
        'bash',
        osp.join(REPO, 'tools/dist_train.sh'),
        str(config), '2', '--work-dir',
        str(work_dir), '--auto-scale-lr'
    ],
                            env=dict(
                                os.environ,
                                PORT=str(port),
                                OMP_NUM_THREADS='1'),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT,
                            text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    assert 'gloo process group (rank 0 of 2)' in result.stdout
    with open(work_dir / 'last_checkpoint') as f:
        checkpoint = load_checkpoint_file(f.read())
    assert checkpoint['meta']['iter'] == 2
    assert 'rng_states' in checkpoint['meta']
    assert len(checkpoint['meta']['rng_states']) == 2
