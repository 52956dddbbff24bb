# Copyright (c) mmsecvit contributors. All rights reserved.
"""Every config under configs/ loads, builds its model and optimizer wrapper
and describes its data, without data or pretrained weights."""
import os.path as osp
import re
from glob import glob

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from mmsecvit.datasets.demo import DEMO_COCO_CLASSES
from mmsecvit.engine.preflight import check_backbone_channels
from mmsecvit.testing import TEST_ARCH

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs')
CONFIGS = sorted(
    osp.relpath(path, CONFIG_DIR)
    for path in glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if '_base_' not in path)

# Output channels of each arch, from the SecViT paper's tables.
CHANNELS = dict(
    tiny=(64, 128, 256, 512),
    small=(64, 128, 256, 512),
    base=(80, 160, 320, 512))
ARCH_OF_NAME = dict(t='tiny', s='small', b='base')


def expected_setup(name):
    """What the name of a config promises: (arch, library, dataset type,
    data_root, processes, images per process)."""
    arch = ARCH_OF_NAME[re.search(r'secvit[-_]([tsb])', name).group(1)]
    demo = name.startswith('demo')
    if re.search(r'ade20k|demo-ade', name):
        root = ('data/demo/ade/ADEChallengeData2016'
                if demo else 'data/ade/ADEChallengeData2016')
        library, dataset = 'mmseg', 'ADE20KDataset'
    else:
        root = 'data/demo/coco/' if demo else 'data/coco/'
        library, dataset = 'mmdet', 'CocoDataset'
    batch = re.search(r'(\d+)xb(\d+)', name)
    if batch:
        gpus, per_gpu = int(batch.group(1)), int(batch.group(2))
    else:
        # mmdet's naming leaves out its default of 8 GPUs x 2 images.
        gpus, per_gpu = (1, 2) if demo else (8, 2)
    return arch, library, dataset, root, gpus, per_gpu


def load(name):
    return Config.fromfile(osp.join(CONFIG_DIR, name))


def build_model(cfg, library):
    if library == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(library):
        return MODELS.build(cfg.model)


def test_all_promised_configs_exist():
    promised = {'maskrcnn_secvit_s.py'}
    for arch in 'tsb':
        promised |= {
            f'mask_rcnn/mask-rcnn_secvit-{arch}_fpn_1x_coco.py',
            f'mask_rcnn/mask-rcnn_secvit-{arch}_fpn_ms-3x_coco.py',
            f'retinanet/retinanet_secvit-{arch}_fpn_1x_coco.py',
            f'upernet/upernet_secvit-{arch}_8xb2-160k_ade20k-512x512.py',
            f'cascade_rcnn/cascade-mask-rcnn_secvit-{arch}_fpn_1x_coco.py',
            f'cascade_rcnn/cascade-mask-rcnn_secvit-{arch}_fpn_ms-3x_coco.py',
            f'sem_fpn/fpn_secvit-{arch}_8xb2-80k_ade20k-512x512.py',
            f'mask2former/mask2former_secvit-{arch}_8xb2-lsj-50e_coco.py',
            f'mask2former/mask2former_secvit-{arch}_8xb2-160k_'
            'ade20k-512x512.py',
            f'dino/dino-4scale_secvit-{arch}_8xb2-12e_coco.py',
        }
    promised |= {
        'demo/mask-rcnn_secvit-s_fpn_demo-coco.py',
        'demo/retinanet_secvit-s_fpn_demo-coco.py',
        'demo/upernet_secvit-s_demo-ade.py',
        'demo/cascade-mask-rcnn_secvit-s_fpn_demo-coco.py',
        'demo/fpn_secvit-s_demo-ade.py',
        'demo/mask2former_secvit-s_demo-ade.py',
        'demo/mask2former_secvit-s_demo-coco.py',
        'demo/dino-4scale_secvit-s_demo-coco.py',
    }
    assert promised <= set(CONFIGS)


@pytest.mark.parametrize('name', CONFIGS)
def test_config_describes_its_run(name):
    arch, library, dataset, root, gpus, per_gpu = expected_setup(name)
    cfg = load(name)
    assert 'mmsecvit' in cfg.custom_imports.imports
    assert cfg.custom_imports.allow_failed_imports is False
    assert cfg.default_scope == library
    backbone = cfg.model.backbone
    assert backbone.type == 'mmsecvit.SecViT'
    assert backbone.arch == arch
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[split].dataset.type == dataset
        assert cfg[split].dataset.data_root == root
    assert cfg.train_dataloader.batch_size == per_gpu
    assert cfg.auto_scale_lr.base_batch_size == gpus * per_gpu
    if name.startswith('demo'):
        assert backbone.init_cfg is None
        assert cfg.train_dataloader.persistent_workers is False
    else:
        assert backbone.init_cfg.type == 'Pretrained'
        assert backbone.init_cfg.checkpoint.endswith(
            f'secvit_{arch[0]}_in1k.pth')


def neck_channels(cfg):
    """The input channels the neck or heads of a config expect."""
    for part in ('neck', 'panoptic_head', 'decode_head'):
        if part in cfg.model:
            return list(cfg.model[part].in_channels)


@pytest.mark.parametrize('name', CONFIGS)
def test_neck_channels_match_the_backbone_arch(name):
    arch = expected_setup(name)[0]
    cfg = load(name)
    out_indices = cfg.model.backbone.out_indices
    assert neck_channels(cfg) == [CHANNELS[arch][i] for i in out_indices]
    if 'auxiliary_head' in cfg.model:
        aux = cfg.model.auxiliary_head
        assert aux.in_channels == CHANNELS[arch][aux.in_index]


@pytest.mark.parametrize('name', CONFIGS)
def test_model_and_optimizer_wrapper_build(name):
    _, library, *_ = expected_setup(name)
    cfg = load(name)
    model = build_model(cfg, library)  # no init_weights: no checkpoint read
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    base_wd = cfg.optim_wrapper.optimizer.weight_decay
    wd = {
        id(group['params'][0]): group['weight_decay']
        for group in optim_wrapper.optimizer.param_groups
    }
    params = dict(model.named_parameters())
    assert len(wd) == sum(p.requires_grad for p in params.values())
    # mmdet's DINO decays everything; Mask2Former (as mmdet's/mmseg's Swin
    # ones) spares the norms only; the other families spare biases too.
    if 'dino' in name:
        norm_wd, bias_wd = base_wd, base_wd
    elif 'mask2former' in name:
        norm_wd, bias_wd = 0, base_wd
    else:
        norm_wd, bias_wd = 0, 0
    block = 'backbone.layers.1.blocks.0'
    assert wd[id(params[f'{block}.norm1.norm.weight'])] == norm_wd
    assert wd[id(params[f'{block}.attn.qkv.bias'])] == bias_wd
    assert wd[id(params[f'{block}.attn.qkv.weight'])] == base_wd


# A forward of each family at full size, the B arch for its other widths.
@pytest.mark.parametrize('name', [
    'maskrcnn_secvit_s.py',
    'retinanet/retinanet_secvit-b_fpn_1x_coco.py',
    'upernet/upernet_secvit-s_8xb2-160k_ade20k-512x512.py',
])
def test_model_runs_forward_through_neck_and_heads(name):
    _, library, *_ = expected_setup(name)
    cfg = load(name)
    model = build_model(cfg, library)
    model.eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.rand(1, 3, 64, 96))
        if library == 'mmseg':
            logits = model.decode_head.forward(feats)
            aux_logits = model.auxiliary_head.forward(feats)
            assert logits.shape[1] == aux_logits.shape[1] == 150
        else:
            assert len(feats) == cfg.model.neck.num_outs


def test_real_schedules_follow_the_paper():
    mask_rcnn = load('maskrcnn_secvit_s.py')
    assert mask_rcnn.optim_wrapper.optimizer.type == 'AdamW'
    assert mask_rcnn.optim_wrapper.optimizer.weight_decay == 0.05
    assert mask_rcnn.train_cfg.max_epochs == 12
    assert mask_rcnn.param_scheduler[1].milestones == [8, 11]
    ms_3x = load('mask_rcnn/mask-rcnn_secvit-s_fpn_ms-3x_coco.py')
    assert ms_3x.train_cfg.max_epochs == 36
    assert ms_3x.param_scheduler[1].milestones == [27, 33]
    assert 'RandomChoice' in [
        t.type for t in ms_3x.train_dataloader.dataset.pipeline
    ]
    upernet = load('upernet/upernet_secvit-s_8xb2-160k_ade20k-512x512.py')
    assert upernet.optim_wrapper.optimizer.lr == 6e-5
    assert upernet.optim_wrapper.optimizer.weight_decay == 0.01
    assert upernet.train_cfg.max_iters == 160000
    assert [s.type for s in upernet.param_scheduler] == ['LinearLR', 'PolyLR']
    assert upernet.param_scheduler[0].end == 1500
    assert upernet.model.auxiliary_head.in_index == 2


def test_new_families_follow_their_sources():
    for arch in 'tsb':
        cascade = load(f'cascade_rcnn/cascade-mask-rcnn_secvit-{arch}_fpn_'
                       'ms-3x_coco.py')
        heads = cascade.model.roi_head.bbox_head
        assert [h.type for h in heads] == ['Shared4Conv1FCBBoxHead'] * 3
        assert {h.loss_bbox.type for h in heads} == {'GIoULoss'}
        assert cascade.train_cfg.max_epochs == 36
        assert cascade.param_scheduler[1].milestones == [27, 33]
        fpn = load(f'sem_fpn/fpn_secvit-{arch}_8xb2-80k_ade20k-512x512.py')
        assert fpn.model.pretrained is None
        assert fpn.model.backbone.drop_path_rate is None  # the arch's
        assert fpn.optim_wrapper.optimizer.lr == 1e-4  # RMT's
        assert fpn.optim_wrapper.optimizer.weight_decay == 1e-4
        assert fpn.train_cfg.max_iters == 80000
        dino = load(f'dino/dino-4scale_secvit-{arch}_8xb2-12e_coco.py')
        assert dino.model.backbone.out_indices == (1, 2, 3)
        assert dino.model.neck.type == 'ChannelMapper'
        assert dino.model.neck.num_outs == 4
        assert dino.train_cfg.max_epochs == 12
    m2f = load('mask2former/mask2former_secvit-s_8xb2-lsj-50e_coco.py')
    assert m2f.train_cfg.max_iters == 368750
    assert m2f.optim_wrapper.clip_grad.max_norm == 0.01
    # Nothing of mmdet's panoptic base that tools/train.py would look for.
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert 'seg' not in m2f[split].dataset.data_prefix


@pytest.mark.parametrize('name', [
    'mask2former/mask2former_secvit-t_8xb2-lsj-50e_coco.py',
    'mask2former/mask2former_secvit-b_8xb2-lsj-50e_coco.py',
    'mask2former/mask2former_secvit-s_8xb2-160k_ade20k-512x512.py',
])
def test_mask2former_backbone_lr_and_norm_decay_as_swin_configs(name):
    """Every backbone parameter at 0.1 x lr; norm layers and layer scales
    without weight decay, everything else (biases too) with it."""
    _, library, *_ = expected_setup(name)
    cfg = load(name)
    model = build_model(cfg, library)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    groups = {
        id(group['params'][0]): group
        for group in optim_wrapper.optimizer.param_groups
    }
    base_lr = cfg.optim_wrapper.optimizer.lr
    base_wd = cfg.optim_wrapper.optimizer.weight_decay
    norms = {
        f'backbone.{name}.{param}'
        for name, module in model.backbone.named_modules()
        if isinstance(module, (nn.LayerNorm, _BatchNorm))
        for param in ('weight', 'bias')
    }
    assert len(norms) > 4 * len(cfg.model.backbone.out_indices)
    layer_scales = 0
    for name, param in model.named_parameters():
        if not name.startswith('backbone.'):
            continue
        group = groups[id(param)]
        assert group['lr'] == pytest.approx(0.1 * base_lr), name
        no_decay = name in norms or '.gamma_' in name
        layer_scales += '.gamma_' in name
        assert group['weight_decay'] == (0 if no_decay else base_wd), name
    assert layer_scales == ('secvit-b' in cfg.filename) * 2 * (26 + 8)
    query_embed = getattr(model, 'panoptic_head', None) or model.decode_head
    assert groups[id(query_embed.query_embed.weight)]['weight_decay'] == 0


def test_entry_config_is_the_s_1x_mask_rcnn():
    entry = load('maskrcnn_secvit_s.py')
    full = load('mask_rcnn/mask-rcnn_secvit-s_fpn_1x_coco.py')
    assert entry.to_dict() == full.to_dict()


@pytest.mark.parametrize('name', [n for n in CONFIGS if n.startswith('demo')])
def test_demo_configs_use_the_demo_data_classes(name):
    cfg = load(name)
    if name.endswith('demo-ade.py'):
        # ADE20K format, all 150 classes as mmseg's ADE20KDataset.
        assert cfg.model.decode_head.num_classes == 150
        assert cfg.train_dataloader.dataset.pipeline[1].reduce_zero_label
        return
    for split in ('train_dataloader', 'val_dataloader'):
        classes = cfg[split].dataset.metainfo.classes
        assert tuple(classes) == DEMO_COCO_CLASSES
    num_classes = len(DEMO_COCO_CLASSES)
    if 'mask2former' in name:
        head = cfg.model.panoptic_head
        assert head.num_things_classes == num_classes
        assert head.num_stuff_classes == 0
        assert len(head.loss_cls.class_weight) == num_classes + 1
        assert cfg.model.panoptic_fusion_head.num_things_classes == \
            num_classes
    else:
        roi_head = cfg.model.get('roi_head')
        heads = ([*roi_head.bbox_head, roi_head.mask_head]
                 if 'cascade' in name else
                 [roi_head.bbox_head, roi_head.mask_head]
                 if roi_head else [cfg.model.bbox_head])
        for head in heads:
            assert head.num_classes == num_classes
    assert cfg.val_evaluator.ann_file.startswith('data/demo/coco/')


@pytest.mark.parametrize('name', CONFIGS)
def test_heads_take_the_backbones_channels(name):
    """The preflight check of tools/train.py and tools/test.py passes on
    every shipped config."""
    check_backbone_channels(load(name))


@pytest.mark.parametrize('name', [n for n in CONFIGS if n.startswith('demo')])
def test_demo_configs_leave_no_demo_helper_names(name):
    """The demo bases' ``demo_*`` settings are all taken with ``_base_.pop``:
    none is left over in the final config."""
    assert [key for key in load(name) if key.startswith('demo_')] == []


def test_pretrained_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv('MMSECVIT_PRETRAINED_DIR', str(tmp_path))
    cfg = load('mask_rcnn/mask-rcnn_secvit-t_fpn_1x_coco.py')
    assert cfg.model.backbone.init_cfg.checkpoint == str(tmp_path /
                                                         'secvit_t_in1k.pth')


@pytest.mark.parametrize('name, root', [
    ('demo/mask-rcnn_secvit-s_fpn_demo-coco.py', 'coco/'),
    ('demo/upernet_secvit-s_demo-ade.py', 'ade/ADEChallengeData2016'),
])
def test_demo_data_root_comes_from_the_environment(monkeypatch, tmp_path,
                                                   name, root):
    """tools/run_demo.sh generates the data in $MMSECVIT_DEMO_DATA."""
    monkeypatch.setenv('MMSECVIT_DEMO_DATA', str(tmp_path))
    cfg = load(name)
    expected = f'{tmp_path}/{root}'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[split].dataset.data_root == expected
    if root.startswith('coco'):
        assert cfg.val_evaluator.ann_file == \
            expected + 'annotations/instances_val2017.json'


def test_missing_pretrained_file_stops_with_its_path(monkeypatch, tmp_path):
    monkeypatch.setenv('MMSECVIT_PRETRAINED_DIR', str(tmp_path))
    cfg = load('maskrcnn_secvit_s.py')
    cfg.model.backbone.arch = TEST_ARCH
    model = build_model(cfg, 'mmdet')
    with pytest.raises(FileNotFoundError, match='secvit_s_in1k.pth'):
        model.backbone.init_weights()


def test_layer_decay_constructor_plugs_into_a_real_config():
    cfg = load('maskrcnn_secvit_s.py')
    cfg.optim_wrapper.constructor = (
        'mmsecvit.LayerDecayOptimWrapperConstructor')
    cfg.optim_wrapper.paramwise_cfg.layer_decay_rate = 0.9
    model = build_model(cfg, 'mmdet')
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lr = {
        id(group['params'][0]): group['lr']
        for group in optim_wrapper.optimizer.param_groups
    }
    params = dict(model.named_parameters())
    base_lr = cfg.optim_wrapper.optimizer.lr
    head_lr = lr[id(params['roi_head.bbox_head.fc_cls.weight'])]
    stem_lr = lr[id(params['backbone.patch_embed.proj.0.weight'])]
    assert head_lr == pytest.approx(base_lr)
    assert stem_lr < head_lr
