# Copyright (c) mmsecvit contributors. All rights reserved.
import glob
import os.path as osp
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner

from mmsecvit.engine.hooks import ClusterVisHook
from mmsecvit.models import SecViT
from mmsecvit.registry import HOOKS
from mmsecvit.testing import TEST_ARCH
from mmsecvit.visualization import grid_shape


class ToyDetector(BaseModel):
    """A SecViT ``backbone`` and a loss: all the hook looks at."""

    def __init__(self):
        super().__init__()
        self.backbone = SecViT(arch=TEST_ARCH)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = self.backbone(inputs)
        if mode == 'loss':
            return dict(loss=sum(f.mean() for f in feats))
        return feats


class ToyDataset(torch.utils.data.Dataset):

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return dict(inputs=torch.rand(3, 32, 32))


@pytest.fixture
def image_path(tmp_path):
    path = str(tmp_path / 'val.png')
    rng = np.random.default_rng(0)
    cv2.imwrite(path, rng.integers(0, 256, (48, 80, 3), dtype=np.uint8))
    return path


def test_hook_is_registered_under_the_mmsecvit_scope():
    assert HOOKS.get('mmsecvit.ClusterVisHook') is ClusterVisHook


def test_hook_writes_cluster_maps_through_local_vis_backend(
        image_path, tmp_path):
    runner = Runner(
        model=ToyDetector(),
        work_dir=str(tmp_path / 'work_dir'),
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=2,
            num_workers=0),
        train_cfg=dict(by_epoch=False, max_iters=3),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        default_hooks=dict(checkpoint=None, logger=None),
        custom_hooks=[
            dict(
                type='mmsecvit.ClusterVisHook',
                interval=2,
                image_path=image_path,
                size=64,
                heads=None)
        ],
        visualizer=dict(
            type='Visualizer', vis_backends=[dict(type='LocalVisBackend')]),
        experiment_name='cluster_vis_hook_test')
    runner.train()

    written = glob.glob(
        osp.join(runner.log_dir, 'vis_data', 'vis_image', '*.png'))
    # Before training (step 0), then every 2 iterations.
    assert sorted(osp.basename(p) for p in written) == [
        'secvit_clusters_0.png', 'secvit_clusters_2.png'
    ]
    figure = cv2.imread(sorted(written)[-1])
    # Stages 0, 1, 2 (last block each), all heads: 1, 2 and 4 columns.
    assert figure.shape[:2] == grid_shape((38, 64), rows=3, cols=4)
    assert runner.model.training  # training mode is restored


def fake_runner(model, dataset=None):
    loop = None if dataset is None else SimpleNamespace(
        dataloader=SimpleNamespace(dataset=dataset))
    drawn = []
    visualizer = SimpleNamespace(
        add_image=lambda name, image, step: drawn.append((name, step)))
    return SimpleNamespace(
        model=model,
        val_loop=loop,
        train_loop=loop,
        iter=0,
        visualizer=visualizer,
        drawn=drawn)


@pytest.mark.parametrize('settings, match', [
    (dict(stages=(7, )), 'no stage 7'),
    (dict(blocks=(20, )), 'block 20 does not exist'),
    (dict(heads=(9, )), 'head 9 does not exist'),
])
def test_settings_the_backbone_lacks_fail_before_training(
        image_path, settings, match):
    """Before, only when the hook first drew, after ``interval``
    iterations (1000 by default) of training."""
    hook = ClusterVisHook(image_path=image_path, size=40, **settings)
    with pytest.raises(ValueError, match=match):
        hook.before_train(fake_runner(ToyDetector()))


def test_clusters_of_the_starting_weights_are_drawn(image_path):
    runner = fake_runner(ToyDetector())
    ClusterVisHook(image_path=image_path, size=40).before_train(runner)
    assert runner.drawn == [('secvit_clusters', 0)]
    # Resumed: checked, but not logged again (the interrupted run logged
    # the figures of its iterations).
    runner = fake_runner(ToyDetector())
    runner.iter = 8
    ClusterVisHook(image_path=image_path, size=40).before_train(runner)
    assert runner.drawn == []


@pytest.mark.parametrize('settings', [dict(alpha=1.5), dict(size=0)])
def test_bad_drawing_settings_are_refused(settings):
    with pytest.raises(ValueError, match=list(settings)[0]):
        ClusterVisHook(**settings)


def test_hook_defaults_to_the_first_validation_image(image_path):

    class Dataset:

        def full_init(self):
            self.initialised = True

        def get_data_info(self, index):
            assert self.initialised
            return dict(img_path=image_path)

    hook = ClusterVisHook(size=40)
    hook.before_train(fake_runner(ToyDetector(), Dataset()))
    assert hook._image.shape == (24, 40, 3)


def test_hook_explains_a_model_without_backbone():
    with pytest.raises(ValueError, match='SecViT `backbone`'):
        ClusterVisHook().before_train(fake_runner(torch.nn.Linear(2, 2)))


def test_hook_explains_a_dataset_without_image_paths():
    with pytest.raises(ValueError, match='image_path'):
        ClusterVisHook().before_train(fake_runner(ToyDetector(), object()))


def test_hook_rejects_a_bad_interval():
    with pytest.raises(ValueError, match='interval'):
        ClusterVisHook(interval=0)
