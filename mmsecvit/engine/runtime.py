# Copyright (c) mmsecvit contributors. All rights reserved.
"""Runtime preparation shared by the tools.

:func:`prepare_runtime` is called by ``tools/train.py`` right before
``Runner.from_cfg(cfg)``. It adapts the config to the machine (CPU-only
distributed training, SyncBN, mixed precision) and makes checkpointing and
resuming safe. Each step is a small function that logs what it changed.
"""
import atexit
import contextlib
import logging
import os
import os.path as osp
import re
import sys
import time
from datetime import timedelta
from typing import Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from mmsecvit.utils.errors import UnsupportedEnvironmentError
from mmsecvit.utils.fileio import CheckpointLoadError, load_checkpoint_file

CPU_DDP_WRAPPER = 'mmsecvit.DeviceAwareDistributedDataParallel'
CHECKPOINT_HOOK = 'mmsecvit.ResumableCheckpointHook'
EPOCH_LOOP = 'mmsecvit.ResumableEpochBasedTrainLoop'
BF16_CPU_OPTIM_WRAPPER = 'mmsecvit.BF16AutocastOptimWrapper'
_SYNC_BN_TYPES = ('SyncBN', 'MMSyncBN', 'SyncBatchNorm', 'TorchSyncBN')
_CHECKPOINT_NAME = re.compile(r'^(epoch|iter)_(\d+)\.pth$')
# Keys in the process group's store: ranks that reached a clean exit, ranks
# that failed.
_EXIT_ARRIVED_KEY = 'mmsecvit/exit/arrived'
_EXIT_FAILED_KEY = 'mmsecvit/exit/failed'
#: Seconds a rank that finished waits for the others before it leaves.
EXIT_TIMEOUT = 300.


def _log(message: str, level: int = logging.INFO) -> None:
    print_log(f'[prepare_runtime] {message}', logger='current', level=level)


def prepare_runtime(cfg: Config, launcher: str = 'none') -> Config:
    """Adapt ``cfg`` to the machine before the Runner is built.

    - Distributed launch without CUDA: a gloo process group is initialised
      here (MMEngine's ``init_dist`` calls ``torch.cuda.set_device``) and the
      model is wrapped by :class:`DeviceAwareDistributedDataParallel`.
    - Distributed launch: the process group is destroyed at exit, once
      every rank got there (:func:`shutdown_distributed`), so that no rank
      aborts while the interpreter shuts down; after an uncaught exception
      it is aborted instead (:func:`abort_distributed`), so that no rank
      waits for it.
    - Without CUDA, SyncBN in ``cfg.model`` becomes BN (with a warning).
    - ``AmpOptimWrapper``: bfloat16 where supported, fp16 with dynamic loss
      scaling otherwise; on CPU :class:`BF16AutocastOptimWrapper`.
    - Checkpoints: :class:`ResumableCheckpointHook` (atomic, RNG states) and
      :class:`ResumableEpochBasedTrainLoop` (mid-epoch resume) replace
      MMEngine's defaults; a checkpoint to resume from or load is checked
      before training starts and ``--resume`` picks the newest complete one.

    Args:
        cfg (mmengine.Config): The full config, modified in place.
        launcher (str): The launcher given on the command line.

    Returns:
        mmengine.Config: ``cfg``.
    """
    cuda = torch.cuda.is_available()
    if launcher != 'none':
        # Registered before any process group exists (MMEngine's Runner
        # makes it on GPU), run at exit while the interpreter is still whole;
        # once per process however often the runtime is prepared.
        atexit.unregister(_shutdown_at_exit)
        atexit.register(_shutdown_at_exit)
        if not cuda:
            setup_cpu_distributed(cfg, launcher)
    if not cuda:
        convert_sync_bn(cfg)
    select_amp(cfg, cuda, launcher)
    use_resumable_checkpointing(cfg)
    resolve_checkpoint_to_load(cfg)
    return cfg


def setup_cpu_distributed(cfg: Config, launcher: str = 'pytorch') -> None:
    """Initialise a gloo process group from ``torch.distributed.run``'s
    environment and choose the CPU-capable DDP wrapper.

    The Runner skips its own ``init_dist`` when a process group exists.

    Raises:
        UnsupportedEnvironmentError: For the 'slurm' and 'mpi' launchers
            (they start GPU jobs: torch seeing no GPU there is a wrong torch
            build or a job without GPUs), or when ``torch.distributed.run``'s
            variables are missing.
    """
    if launcher in ('slurm', 'mpi'):
        build = ('a CPU-only build' if torch.version.cuda is None else
                 f'built for CUDA {torch.version.cuda}')
        raise UnsupportedEnvironmentError(
            f'--launcher {launcher}: torch {torch.__version__} ({build}) '
            'sees no GPU in this process. Install a CUDA build of torch, '
            'and ask the job for GPUs (Slurm: GPUS_PER_NODE / --gres=gpu:N '
            'in tools/slurm_train.sh); `nvidia-smi` in the job shows what it '
            'got. To train with several processes on CPUs, start '
            'tools/dist_train.sh (--launcher pytorch, gloo) instead.')
    missing = [
        name for name in ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')
        if name not in os.environ
    ]
    if missing:
        raise UnsupportedEnvironmentError(
            f'Distributed launch requested but {missing} are not set. Start '
            'the script with tools/dist_train.sh or `python -m '
            'torch.distributed.run`.')
    env_cfg = cfg.setdefault('env_cfg', ConfigDict())
    dist_cfg = env_cfg.setdefault('dist_cfg', ConfigDict())
    dist_cfg['backend'] = 'gloo'
    if not torch_dist.is_initialized():
        timeout = dist_cfg.get('timeout', 1800)
        torch_dist.init_process_group(
            backend='gloo', timeout=timedelta(seconds=timeout))
    wrapper_cfg = cfg.get('model_wrapper_cfg') or ConfigDict()
    if wrapper_cfg.get('type', 'MMDistributedDataParallel') in (
            'MMDistributedDataParallel', CPU_DDP_WRAPPER):
        wrapper_cfg['type'] = CPU_DDP_WRAPPER
        wrapper_cfg.setdefault('broadcast_buffers', False)
        wrapper_cfg.setdefault('find_unused_parameters',
                               cfg.get('find_unused_parameters', False))
        cfg.model_wrapper_cfg = wrapper_cfg
    _log(f'no CUDA: gloo process group (rank {torch_dist.get_rank()} of '
         f'{torch_dist.get_world_size()}), model wrapper '
         f'{cfg.model_wrapper_cfg.type}')


def shutdown_distributed(barrier: bool = False,
                         timeout: float = EXIT_TIMEOUT) -> None:
    """Destroy the default process group, if this process has one.

    A process that exits with its process group alive can abort during
    interpreter finalisation: gloo's worker threads still hold work objects
    whose tensors need the GIL, and the C++ runtime terminates the process
    ("terminate called without an active exception", SIGABRT; see
    pytorch/pytorch#179291). ``torch.distributed.run`` then reports a
    finished run as failed and stops the other ranks. The tools call this
    after a run and :func:`prepare_runtime` registers the exit handler for
    every other way out.

    Args:
        barrier (bool): Wait for every rank first, so that no rank tears
            its group down while another one still talks to it. Only for a
            run that ended normally. The wait goes through the process
            group's store, not a collective: it ends as soon as a rank
            announces a failure (:func:`abort_distributed`) or after
            ``timeout`` seconds, where a collective barrier on NCCL would
            wait for a dead rank until the group's timeout (30 minutes in
            MMEngine). Defaults to False.
        timeout (float): The most seconds to wait for the other ranks.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    if barrier and torch_dist.get_world_size() > 1:
        _wait_for_all_ranks(timeout)
    torch_dist.destroy_process_group()


def abort_distributed() -> None:
    """Leave the process group at once after an error.

    Announces the failure to the ranks waiting in
    :func:`shutdown_distributed` and tears the group down without waiting:
    NCCL is aborted (a graceful destroy waits for collectives that the other
    ranks will never join), gloo is destroyed. The ranks still inside a
    collective are stopped by the launcher (``torch.distributed.run``,
    ``srun --kill-on-bad-exit=1``) when this process exits with an error.
    """
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    announce_failure()
    # Private, the only abort torch has, and missing in older releases.
    abort = getattr(torch_dist.distributed_c10d, '_abort_process_group',
                    None)
    if torch_dist.get_backend() == 'nccl' and abort is not None:
        abort()
    else:
        torch_dist.destroy_process_group()


def announce_failure() -> None:
    """Tell the ranks waiting in :func:`shutdown_distributed` that this rank
    failed, so that they leave without it. Does nothing without a process
    group."""
    if not (torch_dist.is_available() and torch_dist.is_initialized()):
        return
    # The store's host (rank 0) may be gone already: the store then raises,
    # and c10d first writes a C++ stack trace to stderr, which would bury
    # the one message the user should read under a page of frames.
    with _stderr_silenced():
        try:
            _exit_store().add(_EXIT_FAILED_KEY, 1)
        except RuntimeError:
            pass


@contextlib.contextmanager
def _stderr_silenced():
    """Send file descriptor 2 (C++ logs included) to /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _exit_store():
    return torch_dist.distributed_c10d._get_default_store()


def _wait_for_all_ranks(timeout: float) -> None:
    """Count this rank in at the exit; return when every rank has, when one
    failed, or after ``timeout`` seconds."""
    store = _exit_store()
    world_size = torch_dist.get_world_size()
    deadline = time.monotonic() + timeout
    try:
        store.add(_EXIT_ARRIVED_KEY, 1)
        while store.add(_EXIT_ARRIVED_KEY, 0) < world_size:
            if store.add(_EXIT_FAILED_KEY, 0) > 0:
                _log('another rank failed; leaving without waiting for it',
                     logging.WARNING)
                return
            if time.monotonic() > deadline:
                _log(f'not every rank finished within {timeout:.0f} s; '
                     'leaving without them', logging.WARNING)
                return
            time.sleep(0.1)
    except RuntimeError:
        # The store's errors (DistStoreError, DistNetworkError): its host,
        # rank 0, leaves once everyone arrived.
        pass


def _shutdown_at_exit() -> None:
    """The exit handler: abort after an uncaught exception (the interpreter
    keeps it in ``sys.last_value``); otherwise wait for the other ranks and
    shut down.

    The wait matters: a rank that destroys its gloo group while another
    rank is still finishing its run (writing its last checkpoint, say) can
    make that rank abort in gloo's teardown ("terminate called without an
    active exception"), and ``torch.distributed.run`` then reports the
    finished run as failed. The tools shut down with the wait themselves;
    this covers every other script that prepared the runtime.
    """
    if getattr(sys, 'last_value', None) is not None:
        abort_distributed()
    else:
        shutdown_distributed(barrier=True)


def convert_sync_bn(cfg: Config) -> None:
    """Replace every SyncBN norm config in ``cfg.model`` by BN (SyncBN
    needs CUDA)."""
    paths = []

    def convert(node, path):
        if isinstance(node, dict):
            if node.get('type') in _SYNC_BN_TYPES:
                node['type'] = 'BN'
                paths.append(path)
            for key, value in node.items():
                convert(value, f'{path}.{key}')
        elif isinstance(node, (list, tuple)):
            for index, value in enumerate(node):
                convert(value, f'{path}[{index}]')

    convert(cfg.get('model'), 'model')
    if paths:
        _log(
            'SyncBN needs CUDA, none is available: using BN instead in '
            + ', '.join(paths), logging.WARNING)


def local_cuda_device(launcher: str = 'none') -> int:
    """Index of the CUDA device this process will train on.

    The same choice as MMEngine's ``init_dist`` makes later
    (``torch.cuda.set_device``): ``SLURM_LOCALID`` under Slurm, otherwise
    ``LOCAL_RANK``. Found from the environment only, so that no CUDA context
    is made on device 0 before the device is set.

    Args:
        launcher (str): The launcher given on the command line.

    Returns:
        int: The device index.
    """
    if launcher == 'slurm':
        local_id = os.environ.get('SLURM_LOCALID')
        if local_id is not None:
            return int(local_id)
        return int(os.environ['SLURM_PROCID']) % torch.cuda.device_count()
    return int(os.environ.get('LOCAL_RANK', 0))


def native_bf16(device: int) -> bool:
    """Whether CUDA device ``device`` computes in bfloat16 natively.

    ``torch.cuda.is_bf16_supported()`` is also True where bfloat16 is only
    emulated (compute capability 7.x: V100, T4), where it is slow and
    SDPA's fused kernels refuse it, and it asks the current device, which is
    device 0 before ``set_device``. Native support means compute capability
    8.0 or newer (Ampere); on ROCm every device torch supports has it.

    Args:
        device (int): CUDA device index.

    Returns:
        bool: True for native bfloat16.
    """
    if torch.version.hip:
        return True
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def select_amp(cfg: Config, cuda: bool, launcher: str = 'none') -> None:
    """Pick the mixed precision that the machine supports for an
    ``AmpOptimWrapper`` config.

    bfloat16 on GPUs that compute in it natively, float16 with dynamic loss
    scaling on older GPUs, bfloat16 autocast without loss scaling on the
    CPU. A ``dtype`` set in the config is kept on GPU.

    Args:
        cfg (mmengine.Config): The full config, modified in place.
        cuda (bool): Whether CUDA is available.
        launcher (str): The launcher given on the command line; it tells
            which device this process trains on (:func:`local_cuda_device`).
            Defaults to 'none'.
    """
    optim_wrapper = cfg.get('optim_wrapper')
    if not optim_wrapper or optim_wrapper.get('type') != 'AmpOptimWrapper':
        return
    if not cuda:
        optim_wrapper['type'] = BF16_CPU_OPTIM_WRAPPER
        for key in ('loss_scale', 'dtype', 'use_fsdp'):
            optim_wrapper.pop(key, None)
        _log('AMP without CUDA: bfloat16 autocast on the CPU '
             f'({BF16_CPU_OPTIM_WRAPPER}, no loss scaling)')
        return
    if optim_wrapper.get('dtype') is not None:
        return
    device = local_cuda_device(launcher)
    if native_bf16(device):
        optim_wrapper['dtype'] = 'bfloat16'
        _log(f'AMP: bfloat16 (native on cuda:{device})')
    else:
        optim_wrapper['dtype'] = 'float16'
        optim_wrapper.setdefault('loss_scale', 'dynamic')
        _log(f'AMP: float16 with dynamic loss scaling (cuda:{device} has '
             'no native bfloat16)')


def use_resumable_checkpointing(cfg: Config) -> None:
    """Make MMEngine's default checkpoint hook and epoch loop resumable."""
    hook = cfg.get('default_hooks', {}).get('checkpoint')
    if hook is not None and hook.get('type') in ('CheckpointHook',
                                                 'mmengine.CheckpointHook'):
        hook['type'] = CHECKPOINT_HOOK
        _log(f'checkpoints saved atomically by {CHECKPOINT_HOOK}')
    train_cfg = cfg.get('train_cfg')
    epoch_loop_types = ('EpochBasedTrainLoop', 'mmengine.EpochBasedTrainLoop')
    if train_cfg is not None and (
            train_cfg.get('type') in epoch_loop_types or
            ('type' not in train_cfg and train_cfg.get('by_epoch', False))):
        train_cfg.pop('by_epoch', None)
        train_cfg['type'] = EPOCH_LOOP
        _log(f'train loop {EPOCH_LOOP} (resumes mid-epoch)')


#: Config key under which ``--resume`` without a path keeps the config's own
#: ``load_from``: the weights to start from when the work dir holds no
#: checkpoint to resume yet (e.g. a requeued fine-tuning job that never
#: saved one).
LOAD_FROM_IF_NO_CHECKPOINT = 'load_from_if_no_checkpoint'


def resolve_checkpoint_to_load(cfg: Config) -> None:
    """Check the checkpoint to resume from or load before training starts.

    With ``resume`` and no ``load_from``, ``load_from`` becomes the newest
    complete checkpoint in ``work_dir`` (the one ``last_checkpoint`` names,
    or, if that is missing or unreadable, the newest loadable
    ``epoch_*.pth``/``iter_*.pth``). If there is none, training starts
    afresh, from the weights in ``cfg.load_from_if_no_checkpoint`` where
    ``--resume`` put the config's own ``load_from`` there
    (:data:`LOAD_FROM_IF_NO_CHECKPOINT`).

    When resuming, a config without a random seed takes the checkpoint's
    (:func:`adopt_checkpoint_seed`), so that the data order continues.

    Raises:
        FileNotFoundError, CheckpointLoadError: If ``load_from`` names a
            local file that does not exist or cannot be loaded.
    """
    load_from = cfg.get('load_from')
    resume = cfg.get('resume', False)
    checkpoint = None
    if resume and not load_from:
        work_dir = cfg.get('work_dir')
        latest, checkpoint = (_latest_complete_checkpoint(work_dir)
                              if work_dir else (None, None))
        if latest is None:
            _start_without_checkpoint(cfg, work_dir)
            return
        cfg.load_from = latest
        _log(f'resume from {latest}')
    elif load_from and '://' not in str(load_from):
        checkpoint = load_checkpoint_file(load_from)
    if resume and checkpoint is not None:
        adopt_checkpoint_seed(cfg, checkpoint)


def _start_without_checkpoint(cfg: Config, work_dir: Optional[str]) -> None:
    """Nothing to resume in ``work_dir``: train from the config's initial
    weights if ``--resume`` kept them aside, else from scratch."""
    initial = cfg.get(LOAD_FROM_IF_NO_CHECKPOINT)
    if not initial:
        _log(f'resume: no complete checkpoint in {work_dir}, training '
             'from scratch', logging.WARNING)
        return
    if '://' not in str(initial):
        load_checkpoint_file(initial)
    cfg.resume = False
    cfg.load_from = initial
    _log(f'resume: no complete checkpoint in {work_dir}, starting from the '
         f"config's load_from {initial}", logging.WARNING)


def adopt_checkpoint_seed(cfg: Config, checkpoint: dict) -> None:
    """Resume with the random seed of the run that saved ``checkpoint``
    where the config sets none.

    Without a seed, MMEngine draws a new one and builds the train sampler
    with it before it resumes; it then takes the checkpoint's seed for the
    random generators (overwriting the states the checkpoint restored),
    but the sampler keeps the new one. A run resumed in the middle of an
    epoch would then skip the right number of batches of a differently
    shuffled epoch: some samples twice, others not at all. With the
    checkpoint's seed in the config, the sampler shuffles as the
    interrupted run did and MMEngine leaves the restored generator states
    alone.

    Args:
        cfg (mmengine.Config): The config, modified in place.
        checkpoint (dict): The checkpoint to resume from.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    seed = meta.get('seed') if isinstance(meta, dict) else None
    randomness = cfg.get('randomness') or {}
    if seed is None or randomness.get('seed') is not None:
        return
    cfg.randomness = dict(randomness, seed=seed)
    _log(f'resume: random seed {seed} of the checkpoint (the config sets '
         'none), so that the data order continues')


def find_latest_complete_checkpoint(work_dir: str) -> Optional[str]:
    """The newest loadable checkpoint in ``work_dir``, or None.

    Args:
        work_dir (str): The run's work directory.

    Returns:
        str | None: Path of the checkpoint.
    """
    return _latest_complete_checkpoint(work_dir)[0]


def _latest_complete_checkpoint(
        work_dir: str) -> Tuple[Optional[str], Optional[dict]]:
    """The newest loadable checkpoint in ``work_dir`` and its contents, or
    (None, None)."""
    candidates = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if '://' in named:
            # Saved to a remote out_dir: MMEngine's file backends read it;
            # it cannot be checked (nor its seed read) here.
            return named, None
        if named:
            candidates.append(named)
    if osp.isdir(work_dir):
        saved = [
            osp.join(work_dir, name) for name in os.listdir(work_dir)
            if _CHECKPOINT_NAME.match(name)
        ]
        # epoch_* and iter_* numbers are not comparable; saving time is.
        candidates += sorted(saved, key=osp.getmtime, reverse=True)
    for path in candidates:
        try:
            checkpoint = load_checkpoint_file(path)
        except (FileNotFoundError, CheckpointLoadError) as error:
            _log(f'skipping checkpoint: {error}', logging.WARNING)
            continue
        return path, checkpoint
    return None, None
