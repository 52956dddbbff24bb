# Copyright (c) mmsecvit contributors. All rights reserved.
"""What ``tools/train.py`` and ``tools/test.py`` do to a config.

The tools only parse arguments and call these functions in order, so that the
behaviour (scope detection, ``--amp``, ``--resume``, ``--tta`` ...) is tested
here rather than through subprocesses. The behaviour follows mmdet's and
mmseg's own tools.
"""
import logging
import os
import os.path as osp
import warnings
from copy import deepcopy
from typing import Optional

from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmsecvit.utils.checkpoint_fit import check_checkpoint_fits
from mmsecvit.utils.errors import (CheckpointMismatchError, ConfigValueError,
                                   MissingFileError,
                                   unknown_keys_as_config_errors)
from mmsecvit.utils.fileio import load_checkpoint_file
from .runtime import LOAD_FROM_IF_NO_CHECKPOINT, prepare_runtime

#: The OpenMMLab codebases the tools can drive, by registry scope.
CODEBASES = ('mmdet', 'mmseg')
# Data preprocessors tell the codebase when neither the default scope nor the
# model type does (e.g. a config written from scratch).
_PREPROCESSOR_CODEBASE = {
    'DetDataPreprocessor': 'mmdet',
    'SegDataPreprocessor': 'mmseg',
}


def load_config(config: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None,
                launcher: str = 'none') -> Config:
    """Load a config, merge ``--cfg-options`` and settle ``work_dir``.

    ``work_dir`` is, by priority: the command line, the config,
    ``./work_dirs/<config name>``.

    Args:
        config (str): Path of the config file.
        cfg_options (dict, optional): ``--cfg-options`` to merge.
        work_dir (str, optional): ``--work-dir``.
        launcher (str): ``--launcher``. Defaults to 'none'.

    Returns:
        mmengine.Config: The config.
    """
    if not osp.isfile(config):
        raise MissingFileError(f'Config file not found: {config}')
    try:
        cfg = Config.fromfile(config)
    except FileNotFoundError as error:  # a _base_ file
        raise MissingFileError(
            f'{config} inherits a file that does not exist ({error}); fix '
            'its _base_ entry.') from error
    cfg.launcher = launcher
    if cfg_options is not None:
        try:
            cfg.merge_from_dict(cfg_options)
        except (KeyError, TypeError) as error:
            raise ConfigValueError(
                f'--cfg-options cannot be merged into {config}: {error}'
            ) from error
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])
    return cfg


def _split_scope(type_name: str):
    scope, _, name = type_name.rpartition('.')
    return scope, name


def _codebase_of_model_type(type_name: str) -> Optional[str]:
    scope, name = _split_scope(type_name)
    if scope in CODEBASES:
        return scope
    # Importing the model packages registers their modules; each codebase's
    # own registry then tells whether it defines the type.
    import mmdet.models  # noqa: F401
    import mmseg.models  # noqa: F401
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmseg.registry import MODELS as MMSEG_MODELS
    found = [
        codebase for codebase, registry in (('mmdet', MMDET_MODELS),
                                            ('mmseg', MMSEG_MODELS))
        if name in registry.module_dict
    ]
    return found[0] if len(found) == 1 else None


def detect_codebase(cfg: Config) -> str:
    """Tell whether a config is an mmdet or an mmseg config.

    Uses ``cfg.default_scope`` (set by the mmdet/mmseg base runtime
    configs), then the model type, then the data preprocessor type.

    Args:
        cfg (mmengine.Config): The full config.

    Returns:
        str: 'mmdet' or 'mmseg'.

    Raises:
        ConfigValueError: If none of these tells.
    """
    scope = cfg.get('default_scope')
    if scope in CODEBASES:
        return scope
    model = cfg.get('model') or {}
    model_type = model.get('type') if isinstance(model, dict) else None
    if isinstance(model_type, str):
        codebase = _codebase_of_model_type(model_type)
        if codebase:
            return codebase
    preprocessor = model.get('data_preprocessor') or {}
    preprocessor_type = _split_scope(str(preprocessor.get('type', '')))[1]
    if preprocessor_type in _PREPROCESSOR_CODEBASE:
        return _PREPROCESSOR_CODEBASE[preprocessor_type]
    raise ConfigValueError(
        'Cannot tell whether this is an mmdet or an mmseg config: '
        f'default_scope is {scope!r} and the model type {model_type!r} is '
        'not a known detector or segmentor. Inherit the runtime settings of '
        'the codebase (e.g. `_base_ = [\'mmdet::_base_/default_runtime.py\']`)'
        ' or set `default_scope = \'mmdet\'` (or \'mmseg\') in the config.')


def register_codebase(cfg: Config) -> str:
    """Register all modules of the config's codebase and set its scope.

    Args:
        cfg (mmengine.Config): The full config; ``default_scope`` is set to
            the codebase when it is missing.

    Returns:
        str: The codebase, 'mmdet' or 'mmseg'.
    """
    codebase = detect_codebase(cfg)
    if codebase == 'mmdet':
        from mmdet.utils import register_all_modules
    else:
        from mmseg.utils import register_all_modules
    # The Runner sets the default scope from the config; doing it here too
    # would leave a second, stale DefaultScope instance behind.
    register_all_modules(init_default_scope=False)
    if cfg.get('default_scope') is None:
        cfg.default_scope = codebase
    return codebase


def enable_amp(cfg: Config) -> None:
    """``--amp``: automatic mixed precision, as mmdet's tools set it; a
    config that already uses ``AmpOptimWrapper`` keeps its settings (e.g.
    its ``loss_scale``)."""
    optim_wrapper = cfg.get('optim_wrapper')
    if not isinstance(optim_wrapper, dict):
        raise ConfigValueError(
            '--amp needs an `optim_wrapper` dict in the config.')
    if optim_wrapper.get('type', 'OptimWrapper') not in ('OptimWrapper',
                                                         'AmpOptimWrapper'):
        raise ConfigValueError(
            '--amp only applies to optim_wrapper.type OptimWrapper, but the '
            f'config uses {optim_wrapper.type!r}.')
    if optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
        print_log('--amp: the config already uses AmpOptimWrapper; its '
                  'settings are kept.', logger='current', level=logging.INFO)
        return
    optim_wrapper.type = 'AmpOptimWrapper'
    optim_wrapper.loss_scale = 'dynamic'


def enable_auto_scale_lr(cfg: Config) -> None:
    """``--auto-scale-lr``: scale the lr by the real total batch size."""
    auto_scale_lr = cfg.get('auto_scale_lr')
    if not isinstance(auto_scale_lr, dict) or \
            'base_batch_size' not in auto_scale_lr:
        raise ConfigValueError(
            '--auto-scale-lr needs `auto_scale_lr = dict(enable=False, '
            'base_batch_size=N)` in the config, where N is the total batch '
            'size the lr was tuned for.')
    auto_scale_lr.enable = True


def set_resume(cfg: Config, resume: Optional[str]) -> None:
    """``--resume [PATH]``: from PATH, or from the work dir's last
    checkpoint when no path is given (``resume='auto'``).

    Without a path, the config's own ``load_from`` (e.g. the weights a
    fine-tuning run starts from) is kept as
    :data:`~mmsecvit.engine.runtime.LOAD_FROM_IF_NO_CHECKPOINT`: a run
    (or a requeued Slurm job) that finds no checkpoint to resume starts
    from it, as the first run did, instead of from scratch.
    """
    if resume is None:
        return
    cfg.resume = True
    if resume == 'auto':
        if cfg.get('load_from'):
            cfg[LOAD_FROM_IF_NO_CHECKPOINT] = cfg.load_from
        cfg.load_from = None
    else:
        if not osp.isfile(resume):
            raise MissingFileError(
                f'--resume: checkpoint not found: {resume}. Give an existing '
                'checkpoint, or `--resume` alone to resume from the last '
                'checkpoint in the work dir.')
        cfg.load_from = resume


def resume_after_requeue(resume: Optional[str]) -> Optional[str]:
    """``--resume`` for a Slurm job that was requeued.

    Slurm sets ``SLURM_RESTART_COUNT`` in a job that runs again after a
    requeue (e.g. by :class:`~mmsecvit.engine.PreemptionHook`); such a job
    resumes from the newest checkpoint in its work dir unless the command
    line says otherwise.

    Args:
        resume (str, optional): ``--resume`` as given.

    Returns:
        str | None: ``resume``, or 'auto' in a requeued job without it.
    """
    if resume is None and int(os.environ.get('SLURM_RESTART_COUNT', 0)) > 0:
        print_log(
            f'Slurm job restarted {os.environ["SLURM_RESTART_COUNT"]} '
            'time(s): resuming from the latest checkpoint.',
            logger='current')
        return 'auto'
    return resume


def _type_name(hook) -> str:
    return str(hook.get('type', '')).rpartition('.')[2]


def _has_custom_hook(cfg: Config, type_name: str) -> bool:
    """Whether ``cfg.custom_hooks`` has a hook of that type (any scope)."""
    return any(
        _type_name(hook) == type_name
        for hook in cfg.get('custom_hooks') or [])


def _append_custom_hook(cfg: Config, type_name: str) -> None:
    cfg.custom_hooks = [*(cfg.get('custom_hooks') or []), dict(type=type_name)]


def enable_preemption(cfg: Config) -> None:
    """Add :class:`~mmsecvit.engine.PreemptionHook` (checkpoint and stop on
    SIGTERM/SIGUSR1, requeue on Slurm) unless the config has one.

    The hook saves through the checkpoint hook that ``prepare_runtime``
    makes of MMEngine's; a config with another checkpoint hook, or none,
    trains without it (with a warning).
    """
    if _has_custom_hook(cfg, 'PreemptionHook'):
        return
    checkpoint = (cfg.get('default_hooks') or {}).get('checkpoint') or {}
    if _type_name(checkpoint) not in ('CheckpointHook',
                                      'ResumableCheckpointHook'):
        print_log(
            'No stop with a checkpoint on SIGTERM/SIGUSR1: it needs '
            "default_hooks.checkpoint of type 'CheckpointHook', the config "
            f"has {checkpoint.get('type')!r}.",
            logger='current',
            level=logging.WARNING)
        return
    _append_custom_hook(cfg, 'mmsecvit.PreemptionHook')


def enable_visualization(cfg: Config,
                         codebase: str,
                         show_dir: Optional[str] = None,
                         show: bool = False,
                         wait_time: float = 2) -> None:
    """``--show`` / ``--show-dir``: draw the predictions while testing.

    Relative ``show_dir`` ends up under ``work_dir/<timestamp>/`` for mmdet
    (its hook's ``test_out_dir``) and under the visualizer's log dir for
    mmseg, as with their own tools.
    """
    visualization = cfg.get('default_hooks', {}).get('visualization')
    if visualization is None:
        raise ConfigValueError(
            '--show/--show-dir need a visualization hook: add '
            "`default_hooks = dict(visualization=dict(type='"
            f"{'Det' if codebase == 'mmdet' else 'Seg'}VisualizationHook'))`"
            ' to the config.')
    visualization.draw = True
    if show:
        visualization.show = True
        visualization.wait_time = wait_time
    if show_dir:
        if codebase == 'mmdet':
            visualization.test_out_dir = show_dir
        else:
            cfg.visualizer.save_dir = show_dir


def _default_det_tta(cfg: Config) -> None:
    """mmdet's tools' default: horizontal flip TTA merged with NMS."""
    if 'tta_model' not in cfg:
        warnings.warn('No `tta_model` in the config: using DetTTAModel '
                      'with NMS.')
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('No `tta_pipeline` in the config: flipping the test '
                      'pipeline.')
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        tta_pipeline = deepcopy(test_data_cfg.pipeline)
        tta_pipeline[-1] = dict(
            type='TestTimeAug',
            transforms=[[
                dict(type='RandomFlip', prob=1.),
                dict(type='RandomFlip', prob=0.)
            ], [
                dict(
                    type='PackDetInputs',
                    meta_keys=('img_id', 'img_path', 'ori_shape',
                               'img_shape', 'scale_factor', 'flip',
                               'flip_direction'))
            ]])
        cfg.tta_pipeline = tta_pipeline


def enable_tta(cfg: Config, codebase: str) -> None:
    """``--tta``: wrap the model in the config's test-time augmentation.

    mmdet configs without ``tta_model``/``tta_pipeline`` get mmdet's
    default (flip + NMS); mmseg configs must define both (mmseg's base
    configs do).
    """
    if codebase == 'mmdet':
        masks = _mask_predictor(cfg.model)
        if masks:
            raise ConfigValueError(
                f"--tta: mmdet's test-time augmentation (DetTTAModel) merges "
                f'boxes only and refuses instance masks, which this model '
                f'predicts ({masks}). Test without --tta, or with a box-only '
                'detector (e.g. the RetinaNet configs).')
        _default_det_tta(cfg)
    elif 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
        raise ConfigValueError(
            '--tta needs `tta_model` and `tta_pipeline` in the config (mmseg '
            "has them in its `_base_/default_runtime.py` and dataset configs)")
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def _mask_predictor(model: ConfigDict) -> Optional[str]:
    """What of an mmdet model config predicts instance masks (a mask head
    of its RoI head, or a MaskFormer-style model), or None."""
    roi_head = model.get('roi_head') or {}
    if roi_head.get('mask_head'):
        return 'roi_head.mask_head'
    if 'MaskFormer' in str(model.get('type')) or 'Mask2Former' in str(
            model.get('type')):
        return model.type
    return None


def set_seg_output_dir(cfg: Config, out: str) -> None:
    """mmseg's ``--out DIR``: the metric writes the predictions as png."""
    evaluators = cfg.test_evaluator
    for metric in (evaluators
                   if isinstance(evaluators, list) else [evaluators]):
        metric['output_dir'] = out
        metric['keep_results'] = True


def results_dump_metric(codebase: str, out: str):
    """``--out FILE.pkl``: a metric that dumps the raw predictions.

    Append it to ``runner.test_evaluator.metrics`` once the runner is built.

    Args:
        codebase (str): 'mmdet' (masks stored as RLE, as mmdet's tools do)
            or 'mmseg'.
        out (str): The pickle file to write.

    Returns:
        mmengine.evaluator.BaseMetric: The dumping metric.
    """
    if not out.endswith(('.pkl', '.pickle')):
        raise ConfigValueError(
            f'--out must be a .pkl or .pickle file, got {out}' +
            ('' if codebase == 'mmdet' else
             ' (or a directory for png predictions)'))
    if codebase == 'mmdet':
        from mmdet.evaluation import DumpDetResults as Dump
    else:
        from mmengine.evaluator import DumpResults as Dump
    return Dump(out_file_path=out)


def compile_enabled(cfg: Config) -> bool:
    """Whether the config asks MMEngine's Runner to ``torch.compile`` the
    model (``compile = True`` or a dict without ``disable=True``)."""
    option = cfg.get('compile')
    if isinstance(option, dict):
        return not option.get('disable', False)
    return bool(option)


def enable_compile_support(cfg: Config) -> None:
    """Add :class:`~mmsecvit.engine.PlainParamGroupsHook` to a config that
    sets ``compile`` (unless it has one), so that the compiled
    ``train_step`` can trace the optimizer step."""
    if compile_enabled(cfg) and not _has_custom_hook(
            cfg, 'PlainParamGroupsHook'):
        _append_custom_hook(cfg, 'mmsecvit.PlainParamGroupsHook')


def build_runner(cfg: Config,
                 launcher: str = 'none',
                 checkpoint_purpose: str = 'fine_tune'):
    """Prepare the runtime for this machine, build the Runner and check
    that the checkpoint it will load fits its model.

    Args:
        cfg (mmengine.Config): The full config.
        launcher (str): ``--launcher``. Defaults to 'none'.
        checkpoint_purpose (str): What ``load_from`` is for without
            ``resume``: 'fine_tune' (training) or 'evaluate' (testing); see
            :func:`check_checkpoint_to_load`.

    Returns:
        mmengine.runner.Runner: The runner (``runner_type`` honoured).
    """
    cfg = prepare_runtime(cfg, launcher)
    # MMEngine's registry names the class of a misspelt or unknown key.
    with unknown_keys_as_config_errors():
        runner = RUNNERS.build(
            cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    check_checkpoint_to_load(runner.model, cfg, checkpoint_purpose)
    _explain_optimizer_mismatch(runner)
    return runner


def _explain_optimizer_mismatch(runner) -> None:
    """Make the Runner's ``resume`` turn torch's error for an optimizer
    state of other parameter groups (the config's layer decay,
    ``paramwise_cfg`` or ``frozen_stages`` changed since the checkpoint)
    into a :class:`CheckpointMismatchError` that says what to do.

    The optimizer is built only when training starts, after the check of
    :func:`check_checkpoint_to_load`, so the mismatch shows only there.
    """
    resume = runner.resume

    def resume_checked(filename: str, *args, **kwargs):
        try:
            return resume(filename, *args, **kwargs)
        except ValueError as error:
            if 'parameter group' not in str(error):
                raise
            raise CheckpointMismatchError(
                f'The optimizer state of {filename!r} does not fit the '
                f'optimizer of this config ({error}): its parameter groups '
                'differ, e.g. because the layer decay, paramwise_cfg or '
                'frozen_stages changed since the checkpoint was written. '
                'Resume with the config the checkpoint was trained with, or '
                'start a new run from its weights with --cfg-options '
                'load_from=PATH (without --resume).') from error

    runner.resume = resume_checked


def check_checkpoint_to_load(model, cfg: Config,
                             purpose: str = 'fine_tune') -> None:
    """Check the local checkpoint ``cfg.load_from`` against the built model
    before the Runner loads it (non-strictly, with warnings): for resuming
    where ``cfg.resume`` is set, else for ``purpose``; see
    :func:`~mmsecvit.utils.checkpoint_fit.check_checkpoint_fits`.

    Raises:
        CheckpointMismatchError: If it does not fit.
    """
    load_from = cfg.get('load_from')
    if not load_from or '://' in str(load_from):
        return
    # As MMEngine's loading: the model inside a DDP-like wrapper, and the
    # model inside a test-time augmentation one (--tta), whose keys have
    # no 'module.' prefix in the checkpoint.
    if is_model_wrapper(model):
        model = model.module
    if isinstance(model, BaseTTAModel):
        model = model.module
    # Mapped, not read: the Runner reads it next.
    check_checkpoint_fits(model, load_checkpoint_file(load_from, mmap=True),
                          repr(str(load_from)),
                          'resume' if cfg.get('resume') else purpose)
