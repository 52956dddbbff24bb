# Copyright (c) mmsecvit contributors. All rights reserved.
"""Detect, segment instances or segment semantically one image with a
SecViT config, through MMDetection's / MMSegmentation's inferencers, and
save the drawn result.

The task follows the config's ``default_scope`` ('mmdet': detection or
instance segmentation, 'mmseg': semantic segmentation). Without
``--weights`` the model has random weights (fine to check that a config
runs, meaningless as a result) and the class names come from the config's
test dataset.

Examples:
    python tools/demo/image_demo.py demo.jpg \
        configs/mask_rcnn/mask-rcnn_secvit-s_fpn_1x_coco.py \
        --weights work_dirs/mask-rcnn_secvit-s_fpn_1x_coco/epoch_12.pth
    python tools/demo/image_demo.py demo.jpg \
        configs/upernet/upernet_secvit-s_8xb2-160k_ade20k-512x512.py \
        --weights iter_160000.pth --out-dir outputs
"""
import argparse
import copy
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import DATASETS, MODELS, init_default_scope

from mmsecvit.engine.cli import (add_debug_argument, argument_type,
                                 parse_device, run_tool)
from mmsecvit.engine.runtime import convert_sync_bn
from mmsecvit.utils.checkpoint_fit import check_checkpoint_fits
from mmsecvit.utils.errors import ConfigValueError, MissingFileError
from mmsecvit.utils.fileio import load_checkpoint_file
from mmsecvit.utils.image import read_image

TASKS = {
    'mmdet': 'detection / instance segmentation',
    'mmseg': 'semantic segmentation'
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Run a SecViT detector or segmentor on one image.')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument(
        '--weights', help='checkpoint of the whole model (random without)')
    parser.add_argument(
        '--out-dir',
        default='outputs',
        help='the drawn result goes to OUT_DIR/vis/<image name>')
    parser.add_argument(
        '--device',
        type=argument_type(parse_device),
        default='cuda:0' if torch.cuda.is_available() else 'cpu',
        help='device to run on')
    parser.add_argument(
        '--score-thr',
        type=float,
        default=0.3,
        help='detection score threshold (mmdet configs only)')
    parser.add_argument(
        '--opacity',
        type=float,
        default=0.5,
        help='opacity of the drawn segmentation (mmseg configs only)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. '
        'model.backbone.arch=tiny')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def load_config(path: str, options=None) -> Config:
    """The config with its overrides, ready for an inferencer."""
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise ConfigValueError(
            f'{path} has default_scope={scope!r}; image_demo.py runs mmdet '
            f'or mmseg configs (default_scope in {sorted(TASKS)}).')
    # Inference needs no ImageNet weights: the whole model is either loaded
    # from --weights or random.
    backbone = cfg.model.get('backbone', {})
    if isinstance(backbone.get('init_cfg'), dict):
        backbone['init_cfg'] = None
    if not torch.cuda.is_available():
        convert_sync_bn(cfg)
    return cfg


def config_metainfo(cfg: Config) -> dict:
    """Class names (and palette) of the config's test dataset, without
    reading its annotations."""
    dataset_cfg = copy.deepcopy(cfg.test_dataloader.dataset)
    dataset_cfg['lazy_init'] = True
    init_default_scope(cfg.default_scope)
    return dict(DATASETS.build(dataset_cfg).metainfo)


def check_weights(cfg: Config, weights: str) -> None:
    """Check that ``weights`` hold every tensor of the config's model in
    its shape, before an inferencer loads them.

    The inferencers load non-strictly: other weights would only warn (some
    hundred lines) and draw what random layers predict. The model is built
    on the ``meta`` device, so the check allocates and initialises nothing.

    Raises:
        CheckpointMismatchError: If the weights do not fit the model.
    """
    init_default_scope(cfg.default_scope)
    with torch.device('meta'):
        model = MODELS.build(cfg.model)
    check_checkpoint_fits(model, load_checkpoint_file(weights, mmap=True),
                          repr(weights), 'evaluate')


def build_inferencer(cfg: Config, weights=None, device='cpu'):
    """MMDetection's DetInferencer or MMSegmentation's MMSegInferencer."""
    if cfg.default_scope == 'mmdet':
        from mmdet.apis import DetInferencer
        inferencer = DetInferencer(
            model=cfg, weights=weights, device=device, show_progress=False)
        if weights is None:
            # The inferencer falls back to COCO's names; the config knows
            # better (the demo configs have 3 classes).
            meta = config_metainfo(cfg)
            inferencer.model.dataset_meta['classes'] = meta['classes']
            inferencer.visualizer.dataset_meta = inferencer.model.dataset_meta
        return inferencer
    from mmseg.apis import MMSegInferencer
    meta = config_metainfo(cfg) if weights is None else {}
    # Without weights MMSegInferencer would take Cityscapes' 19 classes,
    # fewer than an ADE20K model predicts.
    return MMSegInferencer(
        model=cfg,
        weights=weights,
        device=device,
        classes=meta.get('classes'),
        palette=meta.get('palette'))


def main(argv=None):
    args = parse_args(argv)
    # Read once here: the inferencer would fail on a file that is not an
    # image with a bare AssertionError from mmcv.
    read_image(args.image)
    if not osp.isfile(args.config):
        raise MissingFileError(f'No config at {args.config!r}.')
    if args.weights is not None and not osp.isfile(args.weights):
        raise MissingFileError(f'No checkpoint at {args.weights!r}.')
    cfg = load_config(args.config, args.cfg_options)
    if args.weights is not None:
        check_weights(cfg, args.weights)
    inferencer = build_inferencer(cfg, args.weights, args.device)
    if cfg.default_scope == 'mmdet':
        inferencer(
            args.image,
            out_dir=args.out_dir,
            pred_score_thr=args.score_thr,
            no_save_pred=True)
    else:
        inferencer(args.image, out_dir=args.out_dir, opacity=args.opacity)
    out_file = osp.join(args.out_dir, 'vis', osp.basename(args.image))
    weights = args.weights or 'random weights (no --weights)'
    print(f'{TASKS[cfg.default_scope]} with {weights}: saved {out_file}')
    return out_file


if __name__ == '__main__':
    run_tool(main)
