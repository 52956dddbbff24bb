# Copyright (c) mmsecvit contributors. All rights reserved.
from pathlib import Path

import pytest
from mmengine.config import Config

from mmsecvit.engine.preflight import (DatasetNotFoundError,
                                       PretrainedNotFoundError,
                                       check_backbone_channels,
                                       check_dataset_paths,
                                       check_pretrained_paths, dataset_paths,
                                       iter_dataset_cfgs)
from mmsecvit.testing import TEST_ARCH
from mmsecvit.utils.errors import ConfigKeyError, ConfigValueError

REPO = Path(__file__).resolve().parents[2]


def coco_dataset(data_root, ann_file='annotations/instances_val2017.json'):
    return dict(
        type='CocoDataset',
        data_root=str(data_root),
        ann_file=ann_file,
        data_prefix=dict(img='val2017/'))


def coco_layout(root):
    (root / 'annotations').mkdir(parents=True)
    (root / 'annotations' / 'instances_val2017.json').write_text('{}')
    (root / 'val2017').mkdir()
    return root


def test_missing_data_root_names_path_layout_and_fixes(tmp_path):
    missing = tmp_path / 'data' / 'coco'
    cfg = Config(
        dict(
            train_dataloader=dict(dataset=coco_dataset(missing)),
            val_dataloader=dict(dataset=coco_dataset(missing))))
    with pytest.raises(DatasetNotFoundError) as err:
        check_dataset_paths(cfg)
    message = str(err.value)
    assert f'train_dataloader.dataset.data_root: {missing}' in message
    assert f'val_dataloader.dataset.data_root: {missing}' in message
    # The root alone: the files under it are missing for the same reason.
    assert 'ann_file' not in message.split('\n\n')[0]
    assert 'COCO layout' in message
    assert 'annotations/instances_train2017.json' in message
    assert '--cfg-options train_dataloader.dataset.data_root=' in message
    assert 'make_demo_data.py' in message
    assert f'`ln -s /path/to/the/dataset {missing}`' in message
    assert isinstance(err.value, FileNotFoundError)


def test_missing_files_under_an_existing_root_are_each_named(tmp_path):
    root = coco_layout(tmp_path / 'coco')
    cfg = dict(
        test_dataloader=dict(
            dataset=coco_dataset(root, 'annotations/instances_test.json')),
        test_evaluator=dict(
            type='CocoMetric', ann_file=str(tmp_path / 'elsewhere.json')))
    with pytest.raises(DatasetNotFoundError) as err:
        check_dataset_paths(cfg, splits=('test', ))
    message = str(err.value)
    assert str(root / 'annotations/instances_test.json') in message
    assert 'test_evaluator.ann_file: ' + str(tmp_path / 'elsewhere.json') \
        in message
    assert 'data_prefix.img' not in message
    # The root exists: no symlink onto a missing file is suggested.
    assert 'ln -s' not in message
    assert 'complete the dataset under its data root' in message


def test_existing_data_passes(tmp_path):
    root = coco_layout(tmp_path / 'coco')
    cfg = dict(
        train_dataloader=dict(dataset=coco_dataset(root)),
        val_evaluator=dict(
            ann_file=str(root / 'annotations/instances_val2017.json')))
    check_dataset_paths(cfg)


def test_only_the_requested_splits_are_checked(tmp_path):
    root = coco_layout(tmp_path / 'coco')
    cfg = dict(
        train_dataloader=dict(dataset=coco_dataset(root)),
        test_dataloader=dict(dataset=coco_dataset(tmp_path / 'missing')))
    check_dataset_paths(cfg, splits=('train', 'val'))
    with pytest.raises(DatasetNotFoundError):
        check_dataset_paths(cfg, splits=('test', ))


def test_wrapped_datasets_are_unwrapped(tmp_path):
    root = coco_layout(tmp_path / 'coco')
    ade_root = tmp_path / 'ade' / 'ADEChallengeData2016'
    ade = dict(
        type='ADE20KDataset',
        data_root=str(ade_root),
        data_prefix=dict(
            img_path='images/training', seg_map_path='annotations/training'))
    dataset = dict(
        type='RepeatDataset',
        times=2,
        dataset=dict(
            type='ConcatDataset',
            datasets=[
                coco_dataset(root),
                dict(type='MultiImageMixDataset', dataset=ade)
            ]))
    leaves = list(iter_dataset_cfgs(dataset, 'train_dataloader.dataset'))
    assert [where for where, _ in leaves] == [
        'train_dataloader.dataset.dataset.datasets.0',
        'train_dataloader.dataset.dataset.datasets.1.dataset'
    ]
    with pytest.raises(DatasetNotFoundError) as err:
        check_dataset_paths(dict(train_dataloader=dict(dataset=dataset)))
    message = str(err.value)
    assert ('train_dataloader.dataset.dataset.datasets.1.dataset.data_root: '
            f'{ade_root}') in message
    assert 'ADE20K layout' in message
    assert 'datasets.0' not in message


def test_paths_resolve_like_mmengine_and_skip_remote_ones(tmp_path):
    paths = dict(
        dataset_paths(
            dict(
                data_root='data/ade',
                ann_file='',
                data_prefix=dict(
                    img_path='images', seg_map_path='/abs/annotations'))))
    assert paths == {
        'data_root': 'data/ade',
        'data_prefix.img_path': 'data/ade/images',
        'data_prefix.seg_map_path': '/abs/annotations'
    }
    assert dataset_paths(coco_dataset('s3://bucket/coco')) == []
    assert dataset_paths(
        dict(
            coco_dataset(tmp_path / 'missing'),
            backend_args=dict(backend='petrel'))) == []


def config_with(checkpoint):
    return Config(
        dict(
            model=dict(
                type='MaskRCNN',
                backbone=dict(
                    type='mmsecvit.SecViT',
                    init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
                neck=dict(init_cfg=[dict(type='Xavier', layer='Conv2d')]))))


def test_missing_local_checkpoint_is_named_with_the_fixes(tmp_path):
    missing = tmp_path / 'secvit_s_in1k.pth'
    with pytest.raises(PretrainedNotFoundError) as info:
        check_pretrained_paths(config_with(str(missing)))
    message = str(info.value)
    assert str(missing) in message
    assert 'model.backbone.init_cfg.checkpoint=' in message
    assert 'model.backbone.init_cfg=None' in message
    assert 'MMSECVIT_PRETRAINED_DIR' in message


def test_existing_file_urls_and_no_pretrained_pass(tmp_path):
    present = tmp_path / 'weights.pth'
    present.write_bytes(b'x')
    check_pretrained_paths(config_with(str(present)))
    check_pretrained_paths(config_with('https://example.org/w.pth'))
    check_pretrained_paths(Config(dict(model=dict(type='X', init_cfg=None))))


def test_the_real_entry_config_is_checked(tmp_path):
    cfg = Config.fromfile(str(REPO / 'configs/maskrcnn_secvit_s.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'none.pth')
    with pytest.raises(PretrainedNotFoundError, match='none.pth'):
        check_pretrained_paths(cfg)


def _secvit_model(out_indices=(0, 1, 2, 3), **heads):
    return dict(
        model=dict(
            backbone=dict(
                type='mmsecvit.SecViT',
                arch=TEST_ARCH,
                out_indices=out_indices),
            **heads))


def test_backbone_channels_that_fit_pass():
    channels = TEST_ARCH['embed_dims']
    check_backbone_channels(
        _secvit_model(neck=dict(type='FPN', in_channels=channels)))
    check_backbone_channels(
        _secvit_model((1, 2, 3), neck=[dict(in_channels=channels[1:])]))
    check_backbone_channels(
        _secvit_model(
            decode_head=dict(in_channels=channels[2:], in_index=[2, 3])))
    # Other backbones and heads without a list are not checked.
    check_backbone_channels(
        dict(
            model=dict(
                backbone=dict(type='ResNet'), neck=dict(in_channels=[1]))))
    check_backbone_channels(_secvit_model(decode_head=dict(in_channels=64)))


def test_backbone_channels_that_do_not_fit_are_named():
    channels = TEST_ARCH['embed_dims']
    with pytest.raises(ConfigValueError) as err:
        check_backbone_channels(
            _secvit_model(3, neck=dict(type='FPN', in_channels=channels)))
    message = str(err.value)
    assert f'model.neck.in_channels={channels} do not match' in message
    assert f'out_indices=(3,) gives maps of [{channels[3]}] channels' \
        in message
    with pytest.raises(ConfigValueError, match=r'in_index=\[0, 4\] takes'):
        check_backbone_channels(
            _secvit_model(
                decode_head=dict(in_channels=channels[:2], in_index=[0, 4])))


def test_an_unknown_backbone_key_is_a_config_error():
    model = _secvit_model()
    model['model']['backbone']['with_cpp'] = True
    with pytest.raises(ConfigKeyError,
                       match="unexpected keyword argument 'with_cpp'"):
        check_backbone_channels(model)
