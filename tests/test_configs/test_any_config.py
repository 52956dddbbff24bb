# Copyright (c) mmsecvit contributors. All rights reserved.
"""mmdet's and mmseg's own configs (from their installed ``.mim/configs``)
take SecViT in a few lines through ``configs/_base_/models/
secvit_backbones.py``, build and train a step (docs/any_config.md)."""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.structures import PixelData

from mmsecvit.engine.runtime import convert_sync_bn

BACKBONES = osp.abspath(
    osp.join(
        osp.dirname(__file__), '..', '..', 'configs', '_base_', 'models',
        'secvit_backbones.py'))
SIZE = 64  # tiny images: one training step takes about a second

# The conversions docs/any_config.md shows, each applied to a config that
# the project does not ship.
CONVERSIONS = {
    # All four stages into an FPN.
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py': """
model = dict(
    backbone=_base_.secvit.tiny.backbone,
    neck=dict(in_channels=_base_.secvit.tiny.channels))
""",
    # A neck from stride 8, as mmdet's Swin RetinaNet.
    'mmdet::atss/atss_r50_fpn_1x_coco.py': """
model = dict(
    backbone=dict(_base_.secvit.tiny.backbone, out_indices=(1, 2, 3)),
    neck=dict(in_channels=_base_.secvit.tiny.channels[1:], start_level=0))
""",
    # Heads on single stages; mmseg's model.pretrained names ResNet weights.
    'mmseg::pspnet/pspnet_r50-d8_4xb4-80k_ade20k-512x512.py': """
model = dict(
    pretrained=None,
    backbone=_base_.secvit.tiny.backbone,
    decode_head=dict(in_channels=_base_.secvit.tiny.channels[3]),
    auxiliary_head=dict(in_channels=_base_.secvit.tiny.channels[2]))
""",
    'mmseg::knet/knet-s3_r50-d8_pspnet_8xb2-adamw-80k_ade20k-512x512.py': """
model = dict(
    pretrained=None,
    backbone=_base_.secvit.tiny.backbone,
    decode_head=dict(
        kernel_generate_head=dict(in_channels=_base_.secvit.tiny.channels[3])),
    auxiliary_head=dict(in_channels=_base_.secvit.tiny.channels[2]))
""",
}


def converted(tmp_path, config: str, body: str) -> Config:
    path = tmp_path / 'converted.py'
    path.write_text(
        f'_base_ = [{config!r}, {BACKBONES!r}]\n'
        "custom_imports = dict(imports=['mmsecvit'], "
        f'allow_failed_imports=False)\n{body}')
    return Config.fromfile(str(path))


def library_of(config: str) -> str:
    return config.split('::')[0]


def build(cfg: Config):
    library = cfg.default_scope
    if library == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(library):
        return MODELS.build(cfg.model)


def fake_batch(library: str) -> dict:
    """Two random images with random boxes or label maps."""
    if library == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(
            batch_size=2,
            image_shapes=[(3, SIZE, SIZE)] * 2,
            num_items=[3, 2],
            num_classes=80)
    from mmseg.structures import SegDataSample
    samples = []
    for _ in range(2):
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(SIZE, SIZE),
                ori_shape=(SIZE, SIZE),
                pad_shape=(SIZE, SIZE)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 150, (1, SIZE, SIZE)))
        samples.append(sample)
    return dict(
        inputs=[
            torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8)
            for _ in range(2)
        ],
        data_samples=samples)


@pytest.mark.parametrize('config', sorted(CONVERSIONS))
def test_own_config_trains_a_step_with_secvit(config, tmp_path):
    cfg = converted(tmp_path, config, CONVERSIONS[config])
    backbone = cfg.model.backbone
    assert backbone.type == 'mmsecvit.SecViT'
    assert backbone.init_cfg.checkpoint.endswith('secvit_t_in1k.pth')
    assert set(backbone) == {
        'type', 'arch', 'out_indices', 'drop_path_rate', 'norm_cfg',
        'init_cfg'
    }, 'nothing of the ResNet dict is left'
    convert_sync_bn(cfg)  # no CUDA here
    if library_of(config) == 'mmseg':
        cfg.model.data_preprocessor.size = (SIZE, SIZE)
    torch.manual_seed(0)
    model = build(cfg)  # no init_weights: no checkpoint is read
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = model.backbone.layers[0].blocks[0].attn.qkv.weight.clone()
    log_vars = model.train_step(fake_batch(library_of(config)), optim_wrapper)
    assert math.isfinite(float(log_vars['loss']))
    after = model.backbone.layers[0].blocks[0].attn.qkv.weight
    assert not torch.equal(before, after), 'the backbone was trained'


KNET = 'mmseg::knet/knet-s3_r50-d8_pspnet_8xb2-adamw-80k_ade20k-512x512.py'
KNET_KEEPING_PRETRAINED = CONVERSIONS[KNET].replace('    pretrained=None,\n',
                                                    '')


def test_mmseg_model_pretrained_next_to_init_cfg_says_what_to_do(tmp_path):
    cfg = converted(tmp_path, KNET, KNET_KEEPING_PRETRAINED)
    assert cfg.model.pretrained == 'open-mmlab://resnet50_v1c'
    convert_sync_bn(cfg)
    with pytest.raises(ValueError, match='model.pretrained=None'):
        build(cfg)


def test_mmseg_model_pretrained_reaches_secvit_as_init_cfg(tmp_path):
    cfg = converted(
        tmp_path, KNET, KNET_KEEPING_PRETRAINED.replace(
            'backbone=_base_.secvit.tiny.backbone',
            'backbone=dict(_base_.secvit.tiny.backbone, init_cfg=None)'))
    cfg.model.pretrained = 'secvit_t_elsewhere.pth'
    convert_sync_bn(cfg)
    with pytest.warns(FutureWarning, match='init_cfg'):
        model = build(cfg)
    assert model.backbone.init_cfg == dict(
        type='Pretrained', checkpoint='secvit_t_elsewhere.pth')
