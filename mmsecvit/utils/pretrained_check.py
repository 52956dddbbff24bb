# Copyright (c) mmsecvit contributors. All rights reserved.
"""Check that the pretrained weights a config names exist, before anything
is built.

Without this check a missing ImageNet checkpoint surfaces at
``init_weights``, after the datasets and the model have been built.
"""
import os.path as osp
from typing import Iterator, Tuple


class PretrainedNotFoundError(FileNotFoundError):
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
