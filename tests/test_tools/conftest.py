# Copyright (c) mmsecvit contributors. All rights reserved.
"""Shared fixtures of the tool tests: a workspace with tiny demo data and
configs that shrink the demo configs to the small test arch."""
import os
import os.path as osp
import runpy
import sys

import pytest

from mmsecvit.datasets.demo import make_demo_data
from mmsecvit.engine.cli import DEBUG_ENV
from mmsecvit.testing import TEST_ARCH, arch_literal

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOLS = osp.join(REPO_ROOT, 'tools')

SMALL_ARCH = arch_literal(_delete_=True)
SMALL_CHANNELS = str(TEST_ARCH['embed_dims'])
# One or two iterations, no dataloader workers, and fewer proposals and
# detections so that evaluating an untrained model stays quick.
_COMMON = """
train_dataloader = dict(num_workers=0)
val_dataloader = dict(num_workers=0)
test_dataloader = dict(num_workers=0)
default_hooks = dict(logger=dict(interval=1))
"""
_SMALL_OVERRIDES = {
    'mask-rcnn_secvit-s_fpn_demo-coco.py': f"""
model = dict(
    backbone=dict(arch={SMALL_ARCH}),
    neck=dict(in_channels={SMALL_CHANNELS}),
    test_cfg=dict(
        rpn=dict(nms_pre=200, max_per_img=50),
        rcnn=dict(max_per_img=20)))
train_cfg = dict(max_epochs=1, val_interval=1)
""",
    'retinanet_secvit-s_fpn_demo-coco.py': f"""
model = dict(
    backbone=dict(arch={SMALL_ARCH}),
    neck=dict(in_channels=[64, 128, 256]),  # out_indices (1, 2, 3)
    # An untrained RetinaNet scores below the default 0.05 everywhere, and
    # CocoMetric reports nothing for an empty result list.
    test_cfg=dict(nms_pre=200, score_thr=0.0, max_per_img=20))
train_cfg = dict(max_epochs=1, val_interval=1)
""",
    'upernet_secvit-s_demo-ade.py': f"""
model = dict(
    backbone=dict(arch={SMALL_ARCH}),
    decode_head=dict(in_channels={SMALL_CHANNELS}, channels=32),
    auxiliary_head=dict(in_channels=128, channels=16))
train_cfg = dict(max_iters=2, val_interval=2)
""",
    # Narrower box heads and fewer RoIs: the 4-conv heads of three cascade
    # stages on 512 RoIs per image are most of the time otherwise.
    'cascade-mask-rcnn_secvit-s_fpn_demo-coco.py': f"""
model = dict(
    backbone=dict(arch={SMALL_ARCH}),
    neck=dict(in_channels={SMALL_CHANNELS}),
    roi_head=dict(bbox_head=[
        dict(head, conv_out_channels=32, fc_out_channels=64)
        for head in _base_.model.roi_head.bbox_head
    ]),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=200, max_per_img=100),
        rcnn=[
            dict(stage, sampler=dict(stage.sampler, num=32))
            for stage in _base_.model.train_cfg.rcnn
        ]),
    test_cfg=dict(
        rpn=dict(nms_pre=200, max_per_img=50),
        rcnn=dict(max_per_img=20)))
train_cfg = dict(max_epochs=1, val_interval=1)
""",
    'fpn_secvit-s_demo-ade.py': f"""
model = dict(
    backbone=dict(arch={SMALL_ARCH}),
    neck=dict(in_channels={SMALL_CHANNELS}, out_channels=32),
    decode_head=dict(in_channels=[32] * 4, channels=32))
train_cfg = dict(max_iters=2, val_interval=2)
""",
    # Mask2Former and DINO: fewer queries, transformer layers and sampled
    # mask points (their widths stay those of the real configs).
    'mask2former_secvit-s_demo-ade.py': f"""
model = dict(
    backbone=dict(arch={SMALL_ARCH}),
    decode_head=dict(
        in_channels={SMALL_CHANNELS},
        num_queries=10,
        pixel_decoder=dict(encoder=dict(num_layers=1)),
        transformer_decoder=dict(num_layers=3)),
    train_cfg=dict(num_points=256))
train_cfg = dict(max_iters=2, val_interval=2)
""",
    'mask2former_secvit-s_demo-coco.py': f"""
model = dict(
    backbone=dict(arch={SMALL_ARCH}),
    panoptic_head=dict(
        in_channels={SMALL_CHANNELS},
        num_queries=10,
        pixel_decoder=dict(encoder=dict(num_layers=1)),
        transformer_decoder=dict(num_layers=3)),
    train_cfg=dict(num_points=256),
    test_cfg=dict(max_per_image=10))
train_cfg = dict(max_iters=2, val_interval=2)
""",
    'dino-4scale_secvit-s_demo-coco.py': f"""
model = dict(
    backbone=dict(arch={SMALL_ARCH}),
    neck=dict(in_channels={TEST_ARCH['embed_dims'][1:]}),  # stages 1-3
    num_queries=20,
    encoder=dict(num_layers=1),
    decoder=dict(num_layers=1),
    dn_cfg=dict(group_cfg=dict(num_dn_queries=20)),
    test_cfg=dict(max_per_img=20))
train_cfg = dict(max_epochs=1, val_interval=1)
""",
}


@pytest.fixture(scope='session')
def demo_workspace(tmp_path_factory):
    """A directory holding ``data/demo`` (2 train, 1 val image per dataset),
    where the demo configs' relative data roots resolve."""
    root = tmp_path_factory.mktemp('workspace')
    make_demo_data(
        str(root / 'data' / 'demo'), num_train=2, num_val=1, seed=0)
    return root


def small_config(directory, demo_config: str) -> str:
    """Write a config that inherits ``configs/demo/<demo_config>`` with the
    small arch and a 1-2 iteration schedule; return its path."""
    base = osp.join(REPO_ROOT, 'configs', 'demo', demo_config)
    path = osp.join(str(directory), f'small_{demo_config}')
    with open(path, 'w') as f:
        f.write(f'_base_ = {base!r}\n{_COMMON}{_SMALL_OVERRIDES[demo_config]}')
    return path


def run_tool(monkeypatch, tool: str, *args: str) -> None:
    """Run ``tools/<tool>`` in this process, as from the command line.

    What the tools export for the whole process (``LOCAL_RANK``, and
    ``MMSECVIT_DEBUG`` for ``--debug``) is undone after the test.
    """
    for name in ('LOCAL_RANK', DEBUG_ENV):
        monkeypatch.setenv(name, os.environ.get(name, ''))
        if not os.environ[name]:
            monkeypatch.delenv(name)
    monkeypatch.setattr(sys, 'argv', [tool, *args])
    runpy.run_path(osp.join(TOOLS, tool), run_name='__main__')
