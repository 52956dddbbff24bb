# Copyright (c) mmsecvit contributors. All rights reserved.
"""Log SecViT's token clusters on a fixed image while training."""
from typing import Optional, Sequence

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmsecvit.registry import HOOKS
from mmsecvit.utils.errors import ConfigValueError
from mmsecvit.utils.image import read_image
from mmsecvit.visualization import (collect_cluster_maps, draw_cluster_grid,
                                    resize_longer_side, select_cluster_maps)


@HOOKS.register_module()
class ClusterVisHook(Hook):
    """Draw the clusters of the backbone's SEC attentions on one fixed image
    every ``interval`` training iterations and hand the figure to the
    runner's visualizer, i.e. to every backend it has (local files,
    TensorBoard, ...).

    The hook is not in any config by default; add it with::

        custom_hooks = [dict(type='mmsecvit.ClusterVisHook', interval=1000)]

    and, for TensorBoard, ``visualizer=dict(vis_backends=[
    dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])``.
    The figure is logged under ``name`` at step ``runner.iter + 1``, and
    once before training at step 0 (not when resuming); with the local
    backend it is
    ``<work_dir>/<timestamp>/vis_data/vis_image/<name>_<step>.png``.

    Args:
        interval (int): Draw every this many training iterations.
            Defaults to 1000.
        image_path (str, optional): The image to draw on. None takes the
            first image of the validation dataset (or of the training
            dataset when there is no validation). Defaults to None.
        stages (Sequence[int]): Stages to draw. Defaults to (0, 1, 2).
        blocks (Sequence[int]): Blocks of each stage to draw, -1 for the
            last. Defaults to (-1,).
        heads (Sequence[int], optional): Heads to draw; None for all.
            Defaults to (0,).
        size (int): Longer side of the image fed to the backbone.
            Defaults to 224.
        alpha (float): Opacity of the cluster colours. Defaults to 0.5.
        name (str): Name of the image in the backends. Defaults to
            'secvit_clusters'.
    """

    priority = 'LOW'

    def __init__(self,
                 interval: int = 1000,
                 image_path: Optional[str] = None,
                 stages: Sequence[int] = (0, 1, 2),
                 blocks: Sequence[int] = (-1, ),
                 heads: Optional[Sequence[int]] = (0, ),
                 size: int = 224,
                 alpha: float = 0.5,
                 name: str = 'secvit_clusters') -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ConfigValueError(f'interval must be a positive int, got '
                                   f'{interval!r}.')
        if not 0 <= alpha <= 1:
            raise ConfigValueError(
                f'alpha is an opacity from 0 to 1, got {alpha!r}.')
        if not isinstance(size, int) or size < 1:
            raise ConfigValueError(
                f'size must be a positive int (pixels), got {size!r}.')
        self.interval = interval
        self.image_path = image_path
        self.stages = list(stages)
        self.blocks = list(blocks)
        self.heads = None if heads is None else list(heads)
        self.size = size
        self.alpha = alpha
        self.name = name
        self._image: Optional[np.ndarray] = None

    def before_train(self, runner) -> None:
        """Draw the clusters of the starting weights: on every rank, so
        that a stage, block or head the backbone lacks fails at the start
        (not after the first ``interval`` iterations, and not on rank 0
        alone, which would leave the others waiting); logged by the main
        process at step 0 (a resumed run logged its figures before)."""
        self._get_backbone(runner)
        self._image = self._load_image(runner)
        figure = self.draw(runner)
        if is_main_process() and runner.iter == 0:
            runner.visualizer.add_image(self.name, figure, step=0)

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs=None) -> None:
        # The visualizer writes on the main process only; other ranks would
        # draw for nothing. The backbone runs in eval mode, so no SyncBN
        # collective is left waiting for them.
        if not self.every_n_train_iters(runner, self.interval) or \
                not is_main_process():
            return
        figure = self.draw(runner)
        runner.visualizer.add_image(self.name, figure, step=runner.iter + 1)

    def draw(self, runner) -> np.ndarray:
        """The cluster figure of the current weights (RGB uint8)."""
        if self._image is None:
            self._image = self._load_image(runner)
        maps = collect_cluster_maps(self._get_backbone(runner), self._image)
        maps = select_cluster_maps(maps, self.stages, self.blocks)
        return draw_cluster_grid(
            self._image, maps, heads=self.heads, alpha=self.alpha)

    @staticmethod
    def _get_backbone(runner):
        model = runner.model
        if is_model_wrapper(model):
            model = model.module
        backbone = getattr(model, 'backbone', None)
        if backbone is None:
            raise ConfigValueError(
                f'ClusterVisHook needs a model with a SecViT '
                f'`backbone`; {type(model).__name__} has none.')
        return backbone

    def _load_image(self, runner) -> np.ndarray:
        path = self.image_path or self._first_dataset_image(runner)
        return resize_longer_side(
            read_image(path, channel_order='rgb'), self.size)

    @staticmethod
    def _first_dataset_image(runner) -> str:
        loop = runner.val_loop or runner.train_loop
        dataset = loop.dataloader.dataset
        try:
            if hasattr(dataset, 'full_init'):
                dataset.full_init()  # lazily initialised datasets are empty
            return dataset.get_data_info(0)['img_path']
        except (AttributeError, KeyError, IndexError) as err:
            raise ConfigValueError(
                f'ClusterVisHook cannot find an image in '
                f'{type(dataset).__name__}; set image_path=... in the '
                f'hook config.') from err
