# Copyright (c) mmsecvit contributors. All rights reserved.
import filecmp
import os.path as osp

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from mmsecvit.datasets.demo import (DEMO_ADE_LABELS, DEMO_COCO_CLASSES,
                                    make_demo_data)


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    make_demo_data(str(root), num_train=4, num_val=2, seed=3)
    return root


def test_coco_part_loads_with_pycocotools_and_masks_match_areas(demo_root):
    coco = COCO(
        str(demo_root / 'coco' / 'annotations' / 'instances_train2017.json'))
    assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
        DEMO_COCO_CLASSES)
    assert len(coco.getImgIds()) == 4
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns, 'every image has at least one shape'
    kinds = {type(ann['segmentation']) for ann in anns}
    assert kinds == {list, dict}, 'both polygon and RLE masks are stored'
    for ann in anns:
        img = coco.loadImgs(ann['image_id'])[0]
        assert osp.isfile(demo_root / 'coco' / 'train2017' /
                          img['file_name'])
        mask = coco.annToMask(ann)
        assert mask.shape == (img['height'], img['width'])
        assert mask.sum() == ann['area'] > 0
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann['bbox']
        assert (xs.min(), ys.min()) == (x, y)
        assert (xs.max() + 1, ys.max() + 1) == (x + w, y + h)
        assert ann['iscrowd'] == 0


def test_ade_part_has_label_maps_in_range(demo_root):
    root = demo_root / 'ade' / 'ADEChallengeData2016'
    for split, count in (('training', 4), ('validation', 2)):
        images = sorted((root / 'images' / split).glob('*.jpg'))
        labels = sorted((root / 'annotations' / split).glob('*.png'))
        assert len(images) == len(labels) == count
        assert [p.stem for p in images] == [p.stem for p in labels]
        for image_path, label_path in zip(images, labels):
            label = np.array(Image.open(label_path))
            assert label.shape == Image.open(image_path).size[::-1]
            values = set(np.unique(label).tolist())
            assert values <= {0, *DEMO_ADE_LABELS.values()}
            assert values & {DEMO_ADE_LABELS[c] for c in DEMO_COCO_CLASSES}


def test_same_seed_gives_identical_files_and_other_seed_differs(
        demo_root, tmp_path):
    make_demo_data(str(tmp_path / 'same'), num_train=4, num_val=2, seed=3)
    make_demo_data(str(tmp_path / 'other'), num_train=4, num_val=2, seed=4)
    rel = 'coco/annotations/instances_train2017.json'
    assert filecmp.cmp(demo_root / rel, tmp_path / 'same' / rel,
                       shallow=False)
    assert not filecmp.cmp(demo_root / rel, tmp_path / 'other' / rel,
                           shallow=False)
    rel = ('ade/ADEChallengeData2016/annotations/training/'
           'ADE_train_00000001.png')
    assert filecmp.cmp(demo_root / rel, tmp_path / 'same' / rel,
                       shallow=False)


def test_loads_with_mmdet_coco_dataset_and_scores_perfect_on_ground_truth(
        demo_root):
    from mmdet.datasets import CocoDataset
    from mmdet.evaluation import CocoMetric
    from mmdet.utils import register_all_modules
    register_all_modules()
    ann_file = str(demo_root / 'coco/annotations/instances_val2017.json')
    dataset = CocoDataset(
        data_root=str(demo_root / 'coco'),
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        metainfo=dict(classes=DEMO_COCO_CLASSES),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
        ])
    assert len(dataset) == 2
    metric = CocoMetric(ann_file=ann_file, metric=['bbox', 'segm'])
    metric.dataset_meta = dataset.metainfo
    for index in range(len(dataset)):
        item = dataset[index]
        num = len(item['gt_bboxes_labels'])
        masks = item['gt_masks'].masks.astype(bool)
        assert masks.any(axis=(1, 2)).all()
        pred = dict(
            bboxes=item['gt_bboxes'].tensor,
            scores=torch.ones(num),
            labels=torch.as_tensor(item['gt_bboxes_labels']),
            masks=torch.as_tensor(masks))
        metric.process({}, [
            dict(
                img_id=item['img_id'],
                ori_shape=item['ori_shape'],
                pred_instances=pred)
        ])
    results = metric.evaluate(size=len(dataset))
    assert results['coco/bbox_mAP'] == pytest.approx(1.0)
    assert results['coco/segm_mAP'] == pytest.approx(1.0)


def test_loads_with_mmseg_ade20k_dataset(demo_root):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import ADE20KDataset
    from mmseg.datasets.transforms import LoadAnnotations
    dataset = ADE20KDataset(
        data_root=str(demo_root / 'ade/ADEChallengeData2016'),
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=[
            LoadImageFromFile(),
            LoadAnnotations(reduce_zero_label=True)
        ])
    assert len(dataset) == 2
    seg = dataset[0]['gt_seg_map']
    values = set(np.unique(seg).tolist())
    # Reduced labels: ADE index = png value - 1, unlabelled 0 -> 255.
    assert values <= {255, *(v - 1 for v in DEMO_ADE_LABELS.values())}
    assert 255 in values


def test_rejects_empty_splits(tmp_path):
    with pytest.raises(ValueError, match='num_train'):
        make_demo_data(str(tmp_path), num_train=0)


def test_regenerating_fewer_images_leaves_none_of_the_earlier_ones(tmp_path):
    """mmseg lists the ADE folders: the images of an earlier, larger run
    stayed in the dataset."""
    make_demo_data(str(tmp_path), num_train=3, num_val=2, seed=0)
    (tmp_path / 'ade/ADEChallengeData2016/images/training/mine.jpg').touch()
    make_demo_data(str(tmp_path), num_train=1, num_val=1, seed=0)
    ade = tmp_path / 'ade/ADEChallengeData2016'
    assert sorted(p.name for p in (ade / 'images/training').iterdir()) == [
        'ADE_train_00000001.jpg', 'mine.jpg'
    ]
    assert len(list((ade / 'annotations/training').iterdir())) == 1
    assert len(list((tmp_path / 'coco/train2017').iterdir())) == 1


def test_rejects_a_negative_seed(tmp_path):
    with pytest.raises(ValueError, match='seed'):
        make_demo_data(str(tmp_path), seed=-1)


def test_a_folder_of_other_files_is_never_overwritten(tmp_path):
    """The demo data has the real datasets' layout and file names: a real
    COCO copy must not be replaced by regenerating into it."""
    real = tmp_path / 'coco' / 'train2017'
    real.mkdir(parents=True)
    (real / '000000000001.jpg').write_bytes(b'a real image')
    with pytest.raises(ValueError, match='did not write'):
        make_demo_data(str(tmp_path), num_train=1, num_val=1, ade=False)
    assert (real / '000000000001.jpg').read_bytes() == b'a real image'
