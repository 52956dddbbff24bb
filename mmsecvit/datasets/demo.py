# Copyright (c) mmsecvit contributors. All rights reserved.
"""A small synthetic dataset in the real COCO and ADE20K layouts.

The images show coloured shapes (circles, squares, triangles) on a textured
background. Each shape class has its own colour family, so a detector or a
segmentor learns the task within a short schedule, which makes the data good
for demos and end-to-end tests of the real data pipelines and metrics
(mmdet's ``CocoDataset`` + ``CocoMetric``, mmseg's ``ADE20KDataset`` +
``IoUMetric``).

Layout written under ``out_dir``::

    coco/train2017/*.jpg
    coco/val2017/*.jpg
    coco/annotations/instances_{train2017,val2017}.json
    ade/ADEChallengeData2016/images/{training,validation}/*.jpg
    ade/ADEChallengeData2016/annotations/{training,validation}/*.png

Example:
    >>> import tempfile
    >>> from mmsecvit.datasets.demo import make_demo_data
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     info = make_demo_data(tmp, num_train=2, num_val=1)
    ...     sorted(info)
    ['ade_root', 'coco_root', 'num_images', 'num_instances']
"""
import json
import os
import os.path as osp
import re
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from mmsecvit.utils.errors import ConfigValueError

#: Category names of the COCO part, in category-id order (ids start at 1).
#: Configs pass them as ``metainfo=dict(classes=DEMO_COCO_CLASSES)``.
DEMO_COCO_CLASSES = ('circle', 'square', 'triangle')

#: ADE20K class each shape is labelled as (label value = index in
#: ``ADE20KDataset.METAINFO['classes']`` + 1, as in the real dataset, whose
#: 0 means "unlabelled" and becomes 255 with ``reduce_zero_label=True``).
DEMO_ADE_LABELS = {
    'wall': 1,  # upper background
    'floor': 4,  # lower background
    'circle': 37,  # 'lamp'
    'square': 23,  # 'painting'
    'triangle': 18,  # 'plant'
}

# Mean RGB colour of each shape class: far apart, so colour alone is enough
# to tell the classes apart and a short schedule already learns something.
_SHAPE_COLORS = {
    'circle': (225, 50, 50),
    'square': (50, 205, 70),
    'triangle': (55, 85, 230),
}
_COCO_SPLITS = (('train2017', 'num_train'), ('val2017', 'num_val'))
_ADE_SPLITS = (('training', 'num_train', 'ADE_train'),
               ('validation', 'num_val', 'ADE_val'))
_JPEG_QUALITY = 92
# Every third instance is stored as RLE instead of polygons, so that both
# encodings of COCO instance masks are exercised by the loaders and metrics.
_RLE_EVERY = 3


def _textured_background(rng: np.random.Generator, height: int, width: int,
                         low: int, high: int) -> np.ndarray:
    """A smooth random colour field plus pixel noise, as float32 RGB."""
    # Mostly grey with mild tints, so that the saturated shape colours stand
    # out from the background.
    coarse = rng.uniform(low, high, size=(4, 5, 1)) + rng.uniform(
        -25, 25, size=(4, 5, 3))
    coarse = coarse.astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    field += rng.normal(0, 10, size=field.shape).astype(np.float32)
    return field


def _shape_polygon(rng: np.random.Generator, shape: str, center: np.ndarray,
                   radius: float) -> np.ndarray:
    """Vertices (N, 2) as (x, y) of a randomly rotated shape."""
    num_vertices = {'circle': 32, 'square': 4, 'triangle': 3}[shape]
    start = rng.uniform(0, 2 * np.pi)
    angles = start + np.arange(num_vertices) * 2 * np.pi / num_vertices
    offsets = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
    # Rounded as stored in the json, so that areas and boxes computed here
    # match what the loaders decode.
    return np.round(center[None] + offsets, 2)


def _sample_shapes(rng: np.random.Generator, height: int,
                   width: int) -> List[Tuple[str, np.ndarray]]:
    """Pick 1-4 shapes whose bounding boxes do not overlap."""
    scale = min(height, width) / 256
    taken = []  # boxes (x1, y1, x2, y2) with a margin
    shapes = []
    for _ in range(int(rng.integers(1, 5))):
        shape = DEMO_COCO_CLASSES[int(rng.integers(len(DEMO_COCO_CLASSES)))]
        for _attempt in range(30):
            radius = rng.uniform(18, 50) * scale
            center = rng.uniform([radius, radius],
                                 [width - radius, height - radius])
            box = np.concatenate([center - radius - 4, center + radius + 4])
            if all(box[0] > t[2] or box[2] < t[0] or box[1] > t[3]
                   or box[3] < t[1] for t in taken):
                taken.append(box)
                shapes.append(
                    (shape, _shape_polygon(rng, shape, center, radius)))
                break
    return shapes


def _polygon_rle(polygon: np.ndarray, height: int, width: int) -> dict:
    """COCO RLE of a polygon, rasterised the way pycocotools does it."""
    return mask_utils.frPyObjects([polygon.reshape(-1).tolist()], height,
                                  width)[0]


def _paint(image: np.ndarray, mask: np.ndarray, shape: str,
           rng: np.random.Generator) -> None:
    """Fill ``mask`` in ``image`` with the shape's jittered colour."""
    color = np.array(_SHAPE_COLORS[shape], dtype=np.float32)
    color += rng.uniform(-25, 25, size=3).astype(np.float32)
    noise = rng.normal(0, 8, size=(int(mask.sum()), 3)).astype(np.float32)
    image[mask.astype(bool)] = color + noise


def _write_jpg(path: str, image_rgb: np.ndarray) -> None:
    image = np.clip(image_rgb, 0, 255).astype(np.uint8)[..., ::-1]
    if not cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
        raise OSError(f'Could not write the image {path}.')


def _make_coco_split(rng: np.random.Generator, root: str, split: str,
                     num_images: int, img_size: Tuple[int, int],
                     first_ann_id: int) -> dict:
    """Write the images of one COCO split and return its annotation dict."""
    height, width = img_size
    os.makedirs(osp.join(root, split), exist_ok=True)
    _remove_generated(osp.join(root, split), r'\d{12}\.jpg')
    images, annotations = [], []
    for index in range(num_images):
        image_id = index + 1
        file_name = f'{image_id:012d}.jpg'
        image = _textured_background(rng, height, width, 70, 170)
        for shape, polygon in _sample_shapes(rng, height, width):
            rle = _polygon_rle(polygon, height, width)
            mask = mask_utils.decode(rle)
            _paint(image, mask, shape, rng)
            ann_id = first_ann_id + len(annotations)
            if ann_id % _RLE_EVERY == 0:
                encoded = mask_utils.encode(np.asfortranarray(mask))
                segmentation = dict(
                    size=[height, width],
                    counts=encoded['counts'].decode('ascii'))
            else:
                segmentation = [polygon.reshape(-1).tolist()]
            annotations.append(
                dict(
                    id=ann_id,
                    image_id=image_id,
                    category_id=DEMO_COCO_CLASSES.index(shape) + 1,
                    segmentation=segmentation,
                    area=float(mask_utils.area(rle)),
                    bbox=[float(v) for v in mask_utils.toBbox(rle)],
                    iscrowd=0))
        _write_jpg(osp.join(root, split, file_name), image)
        images.append(
            dict(id=image_id, file_name=file_name, height=height,
                 width=width))
    categories = [
        dict(id=i + 1, name=name, supercategory='shape')
        for i, name in enumerate(DEMO_COCO_CLASSES)
    ]
    return dict(
        info=dict(description='mmsecvit synthetic demo data (COCO format)'),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=categories)


#: The file that marks a dataset root as written by :func:`make_demo_data`.
DEMO_MARKER = '.mmsecvit_demo'


def _claim_root(root: str) -> None:
    """Make ``root`` a demo dataset root, or refuse one that holds files
    :func:`make_demo_data` did not write there.

    The demo data has the layout (and file names) of the real COCO and
    ADE20K: regenerating replaces the earlier demo files, which must never
    be a real copy's.

    Raises:
        ConfigValueError: If ``root`` is not empty and not marked.
    """
    marker = osp.join(root, DEMO_MARKER)
    if osp.isdir(root) and os.listdir(root) and not osp.isfile(marker):
        raise ConfigValueError(
            f'{root} holds files that make_demo_data did not write (e.g. a '
            'real COCO or ADE20K copy), which regenerating would replace. '
            'Generate the demo data into another folder (--out), or empty '
            'that one.')
    os.makedirs(root, exist_ok=True)
    with open(marker, 'w') as f:
        f.write('Written by mmsecvit.datasets.demo.make_demo_data.\n')


def _remove_generated(directory: str, pattern: str) -> None:
    """Remove the files of ``directory`` whose names match ``pattern``
    (what an earlier run wrote there), and nothing else."""
    name = re.compile(pattern)
    for entry in os.listdir(directory):
        path = osp.join(directory, entry)
        if name.fullmatch(entry) and osp.isfile(path):
            os.remove(path)


def _make_ade_split(rng: np.random.Generator, root: str, split: str,
                    prefix: str, num_images: int,
                    img_size: Tuple[int, int]) -> None:
    """Write jpg images and png label maps of one ADE20K split."""
    height, width = img_size
    img_dir = osp.join(root, 'images', split)
    ann_dir = osp.join(root, 'annotations', split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    # mmseg lists the folders: images of an earlier, larger run would stay
    # in the dataset.
    _remove_generated(img_dir, rf'{prefix}_\d{{8}}\.jpg')
    _remove_generated(ann_dir, rf'{prefix}_\d{{8}}\.png')
    kernel = np.ones((3, 3), np.uint8)
    for index in range(num_images):
        horizon = int(rng.uniform(0.4, 0.7) * height)
        image = _textured_background(rng, height, width, 150, 210)
        image[horizon:] = _textured_background(rng, height - horizon, width,
                                               40, 110)
        label = np.full((height, width), DEMO_ADE_LABELS['wall'], np.uint8)
        label[horizon:] = DEMO_ADE_LABELS['floor']
        for shape, polygon in _sample_shapes(rng, height, width):
            mask = mask_utils.decode(_polygon_rle(polygon, height, width))
            _paint(image, mask, shape, rng)
            label[mask.astype(bool)] = DEMO_ADE_LABELS[shape]
            # Like the real ADE20K, leave object outlines unlabelled (0).
            outline = mask.astype(bool) & ~cv2.erode(mask, kernel).astype(bool)
            label[outline] = 0
        name = f'{prefix}_{index + 1:08d}'
        _write_jpg(osp.join(img_dir, f'{name}.jpg'), image)
        if not cv2.imwrite(osp.join(ann_dir, f'{name}.png'), label):
            raise OSError(f'Could not write the label map {name}.png.')


def make_demo_data(out_dir: str,
                   num_train: int = 32,
                   num_val: int = 8,
                   img_size: Sequence[int] = (256, 320),
                   seed: int = 0,
                   coco: bool = True,
                   ade: bool = True) -> Dict[str, object]:
    """Generate the synthetic demo dataset in COCO and ADE20K layouts.

    The output is a pure function of the arguments: the same seed gives
    byte-identical files.

    Args:
        out_dir (str): Directory to write ``coco/`` and ``ade/`` into.
        num_train (int): Number of training images per dataset.
            Defaults to 32.
        num_val (int): Number of validation images per dataset.
            Defaults to 8.
        img_size (Sequence[int]): Image size as (height, width).
            Defaults to (256, 320).
        seed (int): Random seed. Defaults to 0.
        coco (bool): Whether to write the COCO part. Defaults to True.
        ade (bool): Whether to write the ADE20K part. Defaults to True.

    Returns:
        dict: ``coco_root`` and ``ade_root`` (None when not written),
        ``num_images`` per split name and ``num_instances`` per COCO split.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ConfigValueError(
            f'seed must be a non-negative int, got {seed!r}.')
    if num_train < 1 or num_val < 1:
        raise ConfigValueError('num_train and num_val must be at least 1, got '
                               f'{num_train} and {num_val}.')
    height, width = (int(v) for v in img_size)
    if min(height, width) < 64:
        raise ConfigValueError(
            'img_size must be at least 64x64 so that the shapes '
            f'fit, got {height}x{width}.')
    counts = dict(num_train=num_train, num_val=num_val)
    info = dict(
        coco_root=None, ade_root=None, num_images={}, num_instances={})
    # Separate streams per dataset: asking for one part only does not change
    # the other part's content.
    coco_rng, ade_rng = (np.random.default_rng([seed, i]) for i in (0, 1))
    if coco:
        root = osp.join(out_dir, 'coco')
        _claim_root(root)
        os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
        first_ann_id = 1
        for split, count_key in _COCO_SPLITS:
            ann = _make_coco_split(coco_rng, root, split, counts[count_key],
                                   (height, width), first_ann_id)
            first_ann_id += len(ann['annotations'])
            with open(osp.join(root, 'annotations',
                               f'instances_{split}.json'), 'w') as f:
                json.dump(ann, f)
            info['num_images'][split] = len(ann['images'])
            info['num_instances'][split] = len(ann['annotations'])
        info['coco_root'] = root
    if ade:
        root = osp.join(out_dir, 'ade', 'ADEChallengeData2016')
        _claim_root(root)
        for split, count_key, prefix in _ADE_SPLITS:
            _make_ade_split(ade_rng, root, split, prefix, counts[count_key],
                            (height, width))
            info['num_images'][split] = counts[count_key]
        info['ade_root'] = root
    return info
