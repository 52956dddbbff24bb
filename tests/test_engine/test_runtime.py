# Copyright (c) mmsecvit contributors. All rights reserved.
"""``prepare_runtime``: config adaptations, and the process group's end."""
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmsecvit.engine import prepare_runtime
from mmsecvit.engine.runtime import (convert_sync_bn,
                                     find_latest_complete_checkpoint,
                                     select_amp)
from mmsecvit.engine.tool_config import set_resume
from mmsecvit.testing import free_port, run_ranks
from mmsecvit.utils import CheckpointLoadError, UnsupportedEnvironmentError


def test_sync_bn_becomes_bn_everywhere_in_model():
    cfg = Config(
        dict(
            model=dict(
                backbone=dict(norm_cfg=dict(type='SyncBN')),
                heads=[dict(norm_cfg=dict(type='SyncBN', requires_grad=True))],
                neck=dict(norm_cfg=dict(type='GN', num_groups=32)))))
    convert_sync_bn(cfg)
    assert cfg.model.backbone.norm_cfg.type == 'BN'
    assert cfg.model.heads[0].norm_cfg == dict(type='BN', requires_grad=True)
    assert cfg.model.neck.norm_cfg.type == 'GN'


def test_amp_without_cuda_uses_bfloat16_autocast_wrapper():
    cfg = Config(
        dict(
            optim_wrapper=dict(
                type='AmpOptimWrapper',
                loss_scale='dynamic',
                optimizer=dict(type='SGD', lr=0.1))))
    select_amp(cfg, cuda=False)
    assert cfg.optim_wrapper == dict(
        type='mmsecvit.BF16AutocastOptimWrapper',
        optimizer=dict(type='SGD', lr=0.1))


def _fake_gpus(monkeypatch, capabilities):
    """Pretend CUDA devices with these compute capabilities. Asking for the
    current device, or torch's bf16 check (True under emulation on 7.x),
    fails the test: before ``set_device`` both mean device 0."""

    def untouchable(*args, **kwargs):
        raise AssertionError('the current CUDA device was queried')

    monkeypatch.setattr(torch.version, 'hip', None)
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: len(capabilities))
    monkeypatch.setattr(torch.cuda, 'get_device_capability',
                        lambda device: capabilities[device])
    monkeypatch.setattr(torch.cuda, 'current_device', untouchable)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported',
                        lambda including_emulation=True: including_emulation)


@pytest.mark.parametrize('capability, expected', [
    ((7, 0), dict(dtype='float16', loss_scale='dynamic')),
    ((7, 5), dict(dtype='float16', loss_scale='dynamic')),
    ((8, 0), dict(dtype='bfloat16')),
    ((9, 0), dict(dtype='bfloat16')),
])
def test_amp_on_gpu_picks_bf16_only_where_it_is_native(
        monkeypatch, capability, expected):
    _fake_gpus(monkeypatch, [capability])
    monkeypatch.setenv('LOCAL_RANK', '0')
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper')))
    select_amp(cfg, cuda=True, launcher='pytorch')
    assert cfg.optim_wrapper == dict(type='AmpOptimWrapper', **expected)


@pytest.mark.parametrize('launcher, env', [
    ('pytorch', dict(LOCAL_RANK='1')),
    ('slurm', dict(SLURM_LOCALID='1', SLURM_PROCID='5')),
    ('slurm', dict(SLURM_PROCID='3')),  # 3 % 2 devices
])
def test_amp_asks_the_device_of_this_process(monkeypatch, launcher, env):
    _fake_gpus(monkeypatch, [(7, 0), (8, 0)])
    for name in ('LOCAL_RANK', 'SLURM_LOCALID', 'SLURM_PROCID'):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = Config(dict(optim_wrapper=dict(type='AmpOptimWrapper')))
    select_amp(cfg, cuda=True, launcher=launcher)
    assert cfg.optim_wrapper.dtype == 'bfloat16'


def test_amp_keeps_the_dtype_of_the_config(monkeypatch):
    _fake_gpus(monkeypatch, [(7, 0)])
    cfg = Config(
        dict(optim_wrapper=dict(type='AmpOptimWrapper', dtype='bfloat16')))
    select_amp(cfg, cuda=True)
    assert cfg.optim_wrapper == dict(type='AmpOptimWrapper', dtype='bfloat16')


def test_checkpoint_hook_and_epoch_loop_become_resumable():
    cfg = prepare_runtime(
        Config(
            dict(
                default_hooks=dict(
                    checkpoint=dict(type='CheckpointHook', interval=1)),
                train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=2))))
    assert cfg.default_hooks.checkpoint == dict(
        type='mmsecvit.ResumableCheckpointHook', interval=1)
    assert cfg.train_cfg.type == 'mmsecvit.ResumableEpochBasedTrainLoop'


def test_iteration_loop_is_left_alone():
    cfg = prepare_runtime(
        Config(dict(train_cfg=dict(type='IterBasedTrainLoop', max_iters=8))))
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'


def _save(path, iteration):
    torch.save(dict(meta=dict(iter=iteration)), path)
    # distinct modification times without sleeping
    os.utime(path, (iteration, iteration))


def test_resume_skips_a_corrupt_latest_checkpoint(tmp_path):
    _save(tmp_path / 'iter_4.pth', 4)
    _save(tmp_path / 'iter_8.pth', 8)
    (tmp_path / 'iter_8.pth').write_bytes(b'half written')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_8.pth'))
    assert find_latest_complete_checkpoint(str(tmp_path)) == str(
        tmp_path / 'iter_4.pth')
    cfg = prepare_runtime(
        Config(dict(work_dir=str(tmp_path), resume=True, load_from=None)))
    assert cfg.load_from == str(tmp_path / 'iter_4.pth')


def test_resume_takes_the_checkpoints_seed_where_the_config_has_none(
        tmp_path):
    """MMEngine builds the sampler with a freshly drawn seed before it
    resumes; the checkpoint's seed in the config keeps the data order."""
    torch.save(dict(meta=dict(iter=8, seed=1234)), tmp_path / 'iter_8.pth')
    cfg = prepare_runtime(
        Config(dict(work_dir=str(tmp_path), resume=True, load_from=None)))
    assert cfg.load_from == str(tmp_path / 'iter_8.pth')
    assert cfg.randomness == dict(seed=1234)
    # Other randomness settings are kept; a seed of the config wins.
    cfg = prepare_runtime(
        Config(
            dict(
                resume=True,
                load_from=str(tmp_path / 'iter_8.pth'),
                randomness=dict(seed=None, deterministic=True))))
    assert cfg.randomness == dict(seed=1234, deterministic=True)
    cfg = prepare_runtime(
        Config(
            dict(
                resume=True,
                load_from=str(tmp_path / 'iter_8.pth'),
                randomness=dict(seed=7))))
    assert cfg.randomness == dict(seed=7)
    # Loading weights without resuming starts a new run: its own seed.
    cfg = prepare_runtime(
        Config(dict(load_from=str(tmp_path / 'iter_8.pth'))))
    assert 'randomness' not in cfg


def test_auto_resume_without_checkpoint_starts_from_the_configs_weights(
        tmp_path):
    """A requeued fine-tuning job that never saved a checkpoint starts from
    the config's load_from, not from scratch, and does not resume from it
    (its iteration count and optimizer state are another run's)."""
    weights = tmp_path / 'coco_detector.pth'
    torch.save(dict(state_dict=dict(), meta=dict(iter=90000, seed=5)),
               weights)
    work_dir = tmp_path / 'work_dir'
    cfg = Config(dict(work_dir=str(work_dir), load_from=str(weights)))
    set_resume(cfg, 'auto')
    cfg = prepare_runtime(cfg)
    assert cfg.resume is False and cfg.load_from == str(weights)
    assert 'randomness' not in cfg
    # Once the run saved a checkpoint, it resumes from that one.
    work_dir.mkdir()
    _save(work_dir / 'iter_4.pth', 4)
    cfg = Config(dict(work_dir=str(work_dir), load_from=str(weights)))
    set_resume(cfg, 'auto')
    cfg = prepare_runtime(cfg)
    assert cfg.resume is True
    assert cfg.load_from == str(work_dir / 'iter_4.pth')
    # The initial weights are checked too, before training starts.
    weights.write_bytes(b'half written')
    cfg = Config(dict(work_dir=str(tmp_path / 'empty'),
                      load_from=str(weights)))
    set_resume(cfg, 'auto')
    with pytest.raises(CheckpointLoadError, match='coco_detector.pth'):
        prepare_runtime(cfg)


def test_resume_follows_last_checkpoint_to_a_remote_out_dir(tmp_path):
    """Checkpoints saved to a URI (``out_dir='s3://...'``) are resumed from
    by MMEngine's file backend; they cannot be checked locally."""
    _save(tmp_path / 'iter_4.pth', 4)
    (tmp_path / 'last_checkpoint').write_text('s3://bucket/exp/iter_8.pth')
    assert find_latest_complete_checkpoint(
        str(tmp_path)) == 's3://bucket/exp/iter_8.pth'


def test_resume_from_corrupt_file_fails_before_training(tmp_path):
    path = tmp_path / 'epoch_3.pth'
    path.write_bytes(b'\x80\x02 truncated')
    with pytest.raises(CheckpointLoadError, match='epoch_3.pth'):
        prepare_runtime(Config(dict(resume=True, load_from=str(path))))


# A rank that leaves its gloo process group to the interpreter's exit can
# abort there (SIGABRT); prepare_runtime must make the exit destroy it. The
# handler registered first runs last, so it sees the state at the very end.
_EXIT_SCRIPT = """
import atexit
import torch.distributed as dist
from mmengine.config import Config
from mmsecvit.engine import prepare_runtime

atexit.register(
    lambda: print('group alive at exit:', dist.is_initialized(), flush=True))
prepare_runtime(Config(dict(model=dict(type='Toy'))), launcher='pytorch')
print('group alive after prepare_runtime:', dist.is_initialized(), flush=True)
"""


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU path')
def test_distributed_launch_destroys_the_process_group_at_exit():
    env = dict(
        os.environ,
        RANK='0',
        LOCAL_RANK='0',
        WORLD_SIZE='1',
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(free_port()))
    result = subprocess.run([sys.executable, '-c', _EXIT_SCRIPT],
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'group alive after prepare_runtime: True' in result.stdout
    assert 'group alive at exit: False' in result.stdout


def test_shutdown_without_a_process_group_does_nothing():
    import torch.distributed as dist

    from mmsecvit.engine import shutdown_distributed
    assert not dist.is_initialized()
    shutdown_distributed(barrier=True)
    assert not dist.is_initialized()


# Two ranks where one fails while the other has already finished and waits
# for it at the exit. NCCL's barrier would wait for the failed rank until the
# group's timeout (30 minutes); gloo notices the closed connection, so the
# barrier is made to wait like NCCL's.
_FAILING_RANK_SCRIPT = """
import atexit
import sys
import time

import torch.distributed as dist
from mmengine.config import Config

from mmsecvit.engine import prepare_runtime, shutdown_distributed
from mmsecvit.engine.cli import run_tool
from mmsecvit.utils.errors import ConfigValueError


def nccl_like_barrier(*args, **kwargs):
    time.sleep(3600)


def fail(rank):
    if sys.argv[4:] == ['user']:  # stopped by run_tool with os._exit
        raise ConfigValueError(f'rank {rank} failed')
    raise RuntimeError(f'rank {rank} failed')


def leave(rank):
    print(f'rank {rank} leaves at', time.time(), flush=True)


dist.barrier = nccl_like_barrier
at_exit = sys.argv[5:] == ['at-exit']
if at_exit:  # runs after prepare_runtime's exit handler
    atexit.register(lambda: leave(rank))
prepare_runtime(Config(dict(model=dict(type='Toy'))), launcher='pytorch')
rank = dist.get_rank()
if rank == int(sys.argv[1]):
    time.sleep(float(sys.argv[2]))
    run_tool(fail, rank)
time.sleep(rank * float(sys.argv[3]))
print(f'rank {rank} arrives at', time.time(), flush=True)
if not at_exit:
    shutdown_distributed(barrier=True)
    leave(rank)
"""


def _run_two_ranks(*args, timeout=120):
    results = run_ranks(['-c', _FAILING_RANK_SCRIPT, *map(str, args)],
                        timeout=timeout,
                        merge_stderr=True)
    return [code for code, _, _ in results], [out for _, out, _ in results]


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU path')
@pytest.mark.parametrize('error, returncode', [('crash', 1), ('user', 2)])
def test_a_failed_rank_does_not_keep_the_others_at_the_exit(
        error, returncode):
    # Rank 1 fails 3 s after rank 0 reached the exit.
    returncodes, outputs = _run_two_ranks(1, 3, 0, error)
    assert returncodes == [0, returncode], outputs
    if error == 'crash':
        assert 'RuntimeError: rank 1 failed' in outputs[1]
    assert 'another rank failed; leaving without waiting' in outputs[0]
    assert 'rank 0 leaves at' in outputs[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU path')
@pytest.mark.parametrize('shutdown', ['explicit', 'at-exit'])
def test_a_clean_exit_waits_for_every_rank(shutdown):
    # No rank fails (-1); rank 1 reaches the exit 3 s after rank 0. The
    # tools shut down themselves; any other script that prepared the
    # runtime leaves it to the exit handler, which must wait as well (a
    # gloo group destroyed under a rank still at work can abort that rank).
    returncodes, outputs = _run_two_ranks(-1, 0, 3, 'none', shutdown)
    assert returncodes == [0, 0], outputs

    def time_of(event, output):
        (line, ) = [line for line in output.splitlines() if event in line]
        return float(line.split()[-1])

    assert time_of('rank 0 leaves at', outputs[0]) >= time_of(
        'rank 1 arrives at', outputs[1])


@pytest.mark.parametrize('launcher', ['slurm', 'mpi'])
def test_gpu_launchers_without_a_gpu_say_so(monkeypatch, launcher):
    """A Slurm job without GPUs (or with a CPU build of torch) was told to
    set torch.distributed.run's variables and use another script."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    for name, value in dict(
            SLURM_PROCID='0', SLURM_NTASKS='1', SLURM_LOCALID='0',
            SLURM_NODELIST='node1').items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UnsupportedEnvironmentError) as info:
        prepare_runtime(Config(dict(model=dict(type='Toy'))), launcher)
    message = str(info.value)
    assert f'--launcher {launcher}: torch {torch.__version__}' in message
    assert 'sees no GPU' in message and '--gres=gpu:N' in message
    assert 'RANK' not in message
