# Copyright (c) mmsecvit contributors. All rights reserved.
"""Check, before anything is built, that the files a config needs exist.

Without these checks a missing dataset surfaces as a traceback from deep
inside a dataset class (or, for mmseg, as an empty dataset) after the model
has been built, and a missing ImageNet checkpoint at ``init_weights``.
:func:`check_dataset_paths` walks the dataloaders' dataset configs, wrappers
included, and :func:`check_pretrained_paths` the model's ``init_cfg``; each
raises one error that names every missing path and says how to fix it.
:func:`check_backbone_channels` compares the neck's or decode head's input
channels with the backbone's outputs.
"""
import os.path as osp
from typing import Iterator, List, Sequence, Tuple

import torch

from mmsecvit.models import SecViT
from mmsecvit.utils.errors import (ConfigValueError, MissingFileError,
                                   unknown_keys_as_config_errors)

_WRAPPED_KEYS = ('dataset', 'datasets')
_PREFIX_KEYS = ('img', 'img_path', 'seg', 'seg_map_path')

# What each known layout looks like and where to get it, keyed by a
# substring of the dataset type.
_LAYOUTS = {
    'coco': ('COCO', """\
    data/coco/
        annotations/instances_train2017.json
        annotations/instances_val2017.json
        train2017/*.jpg
        val2017/*.jpg
  Download it from https://cocodataset.org/#download (2017 train/val images
  and annotations)."""),
    'ade20k': ('ADE20K', """\
    data/ade/ADEChallengeData2016/
        images/training/*.jpg
        images/validation/*.jpg
        annotations/training/*.png
        annotations/validation/*.png
  Download ADEChallengeData2016.zip from
  http://sceneparsing.csail.mit.edu/ and unzip it into data/ade/."""),
}


class DatasetNotFoundError(MissingFileError):
    """A dataset path that a config needs does not exist.

    The message (``str(err)``) is written for the user: it names each
    missing path, the expected layout and how to fix it.
    """


def _is_remote(path: str) -> bool:
    return '://' in path


def _join(data_root, path: str) -> str:
    if data_root and not osp.isabs(path):
        return osp.join(data_root, path)
    return path


def iter_dataset_cfgs(dataset_cfg,
                      where: str) -> Iterator[Tuple[str, dict]]:
    """Yield every leaf dataset config, unwrapping dataset wrappers.

    Args:
        dataset_cfg (dict | list): A dataset config, possibly a wrapper
            (``RepeatDataset``, ``ConcatDataset``, ``MultiImageMixDataset``
            ...) holding ``dataset`` or ``datasets``.
        where (str): Dotted name of ``dataset_cfg`` in the config.

    Yields:
        tuple[str, dict]: The dotted name and the leaf dataset config.
    """
    if isinstance(dataset_cfg, (list, tuple)):
        for i, sub_cfg in enumerate(dataset_cfg):
            yield from iter_dataset_cfgs(sub_cfg, f'{where}.{i}')
        return
    if not isinstance(dataset_cfg, dict):
        return  # an already built dataset: nothing to check
    wrapped = [key for key in _WRAPPED_KEYS if key in dataset_cfg]
    if wrapped:
        for key in wrapped:
            yield from iter_dataset_cfgs(dataset_cfg[key], f'{where}.{key}')
    else:
        yield where, dataset_cfg


def dataset_paths(dataset_cfg: dict) -> List[Tuple[str, str]]:
    """The local paths a dataset config reads, resolved as mmengine does.

    Args:
        dataset_cfg (dict): A leaf dataset config.

    Returns:
        list[tuple[str, str]]: ``(key, path)`` pairs, the data root first.
        Remote paths (``s3://`` ...) and datasets on a non-local file
        backend are left out.
    """
    backend = (dataset_cfg.get('backend_args') or {}).get('backend', 'local')
    if backend != 'local':
        return []
    data_root = dataset_cfg.get('data_root')
    paths = []
    if data_root:
        paths.append(('data_root', data_root))
    ann_file = dataset_cfg.get('ann_file')
    if ann_file:
        paths.append(('ann_file', _join(data_root, ann_file)))
    prefixes = dataset_cfg.get('data_prefix') or {}
    for key in _PREFIX_KEYS:
        if prefixes.get(key):
            paths.append((f'data_prefix.{key}', _join(data_root,
                                                      prefixes[key])))
    return [(key, path) for key, path in paths if not _is_remote(str(path))]


def _missing_evaluator_files(evaluator_cfg,
                             where: str) -> List[Tuple[str, str]]:
    """Missing ``ann_file`` of the metrics (CocoMetric reads its own), as
    ``(path, problem)`` pairs."""
    if isinstance(evaluator_cfg, dict):
        evaluator_cfg = [evaluator_cfg]
    problems = []
    for i, metric_cfg in enumerate(evaluator_cfg or []):
        ann_file = metric_cfg.get('ann_file') if isinstance(
            metric_cfg, dict) else None
        if (ann_file and not _is_remote(ann_file)
                and not osp.exists(ann_file)):
            name = where if len(evaluator_cfg) == 1 else f'{where}.{i}'
            problems.append((ann_file, f'  {name}.ann_file: {ann_file} '
                             f'(absolute: {osp.abspath(ann_file)})'))
    return problems


def _layout_hint(dataset_type: str) -> str:
    lowered = dataset_type.lower()
    for key, (name, layout) in _LAYOUTS.items():
        if key in lowered:
            return f'{dataset_type} expects the {name} layout:\n{layout}'
    return (f'See the documentation of {dataset_type} for the layout it '
            'expects.')


def check_dataset_paths(
    cfg,
    splits: Sequence[str] = ('train', 'val', 'test')
) -> None:
    """Raise :class:`DatasetNotFoundError` if a dataset path is missing.

    Args:
        cfg (mmengine.Config | dict): The full config.
        splits (Sequence[str]): Which ``{split}_dataloader`` entries to
            check, e.g. ``('train', 'val')`` for training. Missing or
            ``None`` dataloaders are skipped.

    Raises:
        DatasetNotFoundError: With a message naming each missing path, the
            layout the dataset type expects and how to fix it.
    """
    problems, hints, missing_paths, missing_roots = [], [], [], []
    for split in splits:
        loader_cfg = cfg.get(f'{split}_dataloader')
        if not isinstance(loader_cfg, dict) or 'dataset' not in loader_cfg:
            continue
        for where, dataset_cfg in iter_dataset_cfgs(
                loader_cfg['dataset'], f'{split}_dataloader.dataset'):
            missing = [(key, path) for key, path in dataset_paths(dataset_cfg)
                       if not osp.exists(path)]
            if not missing:
                continue
            # When the root is missing, everything under it is too: name it
            # alone rather than repeat the same cause.
            if missing[0][0] == 'data_root':
                missing = missing[:1]
            for key, path in missing:
                missing_paths.append(path)
                if key == 'data_root':
                    missing_roots.append(path)
                problems.append(f'  {where}.{key}: {path} '
                                f'(absolute: {osp.abspath(path)})')
            hint = _layout_hint(str(dataset_cfg.get('type', 'the dataset')))
            if hint not in hints:
                hints.append(hint)
        for path, problem in _missing_evaluator_files(
                cfg.get(f'{split}_evaluator'), f'{split}_evaluator'):
            # A file under a data root reported missing adds nothing.
            if not any(path.startswith(root) for root in missing_paths):
                missing_paths.append(path)
                problems.append(problem)
    if not problems:
        return
    lines = ['Dataset not found. These paths from the config do not exist:']
    lines += list(dict.fromkeys(problems))  # val and test often share one
    # A symlink stands in for a missing data root; files missing under an
    # existing root mean an incomplete dataset.
    first_fix = (
        '  - put (or symlink) the dataset at the path above, e.g. '
        f'`ln -s /path/to/the/dataset {missing_roots[0].rstrip("/")}`;'
        if missing_roots else
        '  - complete the dataset under its data root (the layout above);')
    lines += [''] + hints + [
        '',
        'To fix it, do one of:',
        first_fix,
        '  - point the config to it, e.g. `--cfg-options '
        'train_dataloader.dataset.data_root=/path/to/data '
        'val_dataloader.dataset.data_root=/path/to/data` (and the '
        'evaluator\'s ann_file for COCO);',
        '  - or try the synthetic demo data: '
        '`python tools/misc/make_demo_data.py --out data/demo` and a config '
        'from configs/demo/.',
    ]
    raise DatasetNotFoundError('\n'.join(lines))


class PretrainedNotFoundError(MissingFileError):
    """A pretrained checkpoint that the config's ``init_cfg`` names does not
    exist. The message says how to get it or do without it."""


def iter_pretrained(cfg, where: str = 'model') -> Iterator[Tuple[str, str]]:
    """Yield ``(config key, checkpoint)`` for every ``init_cfg`` of type
    'Pretrained' in ``cfg`` (nested dicts and lists included)."""
    if isinstance(cfg, dict):
        init_cfg = cfg.get('init_cfg')
        init_cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
        for item in init_cfgs:
            if isinstance(item, dict) and item.get('type') == 'Pretrained' \
                    and item.get('checkpoint'):
                yield f'{where}.init_cfg.checkpoint', str(item['checkpoint'])
        for key, value in cfg.items():
            if key != 'init_cfg':
                yield from iter_pretrained(value, f'{where}.{key}')
    elif isinstance(cfg, (list, tuple)):
        for index, value in enumerate(cfg):
            yield from iter_pretrained(value, f'{where}[{index}]')


def check_pretrained_paths(cfg) -> None:
    """Raise :class:`PretrainedNotFoundError` if a local pretrained
    checkpoint named in ``cfg.model`` is missing (URLs are not checked).

    Args:
        cfg (mmengine.Config | dict): The full config.
    """
    missing = [(key, path)
               for key, path in iter_pretrained(cfg.get('model', {}))
               if '://' not in path and not osp.isfile(path)]
    if not missing:
        return
    lines = ['Pretrained weights not found:']
    lines += [f'  {key}: {path} (absolute: {osp.abspath(path)})'
              for key, path in missing]
    lines += [
        '',
        'To fix it, do one of:',
        "  - download the authors' ImageNet checkpoint of this arch "
        '(https://github.com/qhfan/SecViT) and put it at the path above, or '
        'set MMSECVIT_PRETRAINED_DIR to the folder that holds it;',
        '  - point to the file: --cfg-options '
        f'{missing[0][0]}=/path/to/checkpoint.pth;',
        '  - or train from scratch: --cfg-options '
        f'{missing[0][0].rsplit(".", 1)[0]}=None',
    ]
    raise PretrainedNotFoundError('\n'.join(lines))


def check_backbone_channels(cfg) -> None:
    """Refuse a neck (or, without one, a decode head) whose ``in_channels``
    differ from the maps a SecViT backbone gives (its arch's channels at
    ``out_indices``, picked by the head's ``in_index`` where it has a list
    of them).

    Without this check, e.g. ``model.backbone.out_indices=3`` under an FPN
    of four inputs fails at the first step in mmdet's bare ``assert
    len(inputs) == len(self.in_channels)``. The backbone is built on the
    ``meta`` device (no memory, no weights); other backbones, and heads
    without a list of ``in_channels``, are not checked.

    Args:
        cfg (mmengine.Config | dict): The full config.

    Raises:
        ConfigValueError: Naming the head, its ``in_channels`` and the
            backbone's channels.
    """
    model = cfg.get('model') or {}
    backbone = model.get('backbone') or {}
    if str(backbone.get('type', '')).rpartition('.')[2] != 'SecViT':
        return
    with unknown_keys_as_config_errors(), torch.device('meta'):
        secvit = SecViT(**{k: v for k, v in backbone.items() if k != 'type'})
    outs = [secvit.embed_dims[i] for i in secvit.out_indices]
    # The first module after the backbone: with a neck, the decode head
    # takes the neck's maps.
    where = 'neck' if model.get('neck') else 'decode_head'
    head = model.get(where)
    if isinstance(head, (list, tuple)):  # several necks: the first
        head = head[0] if head else None
    in_channels = head.get('in_channels') if isinstance(head, dict) else None
    if not isinstance(in_channels, (list, tuple)):
        return
    in_index = head.get('in_index')
    expected = outs if not isinstance(in_index, (list, tuple)) else [
        outs[i] if -len(outs) <= i < len(outs) else None for i in in_index
    ]
    if list(in_channels) != expected:
        raise ConfigValueError(
            f'model.{where}.in_channels={list(in_channels)} do not match '
            f'the backbone: SecViT with out_indices='
            f'{tuple(secvit.out_indices)} gives maps of {outs} channels' +
            (f', of which in_index={list(in_index)} takes {expected}'
             if isinstance(in_index, (list, tuple)) else '') +
            f'. Set model.{where}.in_channels to match, or change the '
            "backbone's out_indices.")
