# Copyright (c) mmsecvit contributors. All rights reserved.
"""Two-process CPU (gloo) training through ``prepare_runtime`` and MMEngine's
Runner, killed with SIGKILL and resumed.

A toy model keeps these runs to seconds; it goes through the same launcher
(``torch.distributed.run``), ``prepare_runtime``, Runner, DDP wrapper,
checkpoint hook and train loop as ``tools/train.py``.
"""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

from mmsecvit.testing import free_port
from mmsecvit.utils import load_checkpoint_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_TRAIN = osp.join(osp.dirname(osp.abspath(__file__)), 'toy_train.py')
NUM_SAMPLES = 24  # ToyRegressionDataset
ITERS_PER_EPOCH = NUM_SAMPLES // (2 * 2)  # 2 ranks x batch 2


def _launch(work_dir, *args, timeout=240, **extra_env):
    env = dict(
        os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1', **extra_env)
    command = [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
        '2', '--master_addr', '127.0.0.1', '--master_port',
        str(free_port()), TOY_TRAIN,
        str(work_dir), '--launcher', 'pytorch', '--auto-scale-lr', *args
    ]
    return subprocess.run(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)


def _reports(work_dir):
    reports = []
    for rank in range(2):
        with open(osp.join(work_dir, f'rank{rank}.json')) as f:
            reports.append(json.load(f))
    return reports


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('uninterrupted')
    result = _launch(work_dir)
    assert result.returncode == 0, result.stdout[-3000:]
    return work_dir, _reports(work_dir)


def test_two_gloo_processes_train_data_parallel(uninterrupted):
    _, (rank0, rank1) = uninterrupted
    for report in (rank0, rank1):
        assert report['backend'] == 'gloo'
        assert report['wrapper'] == 'DeviceAwareDistributedDataParallel'
    # Gradients are averaged: parameters agree after training.
    assert rank0['params'] == rank1['params']
    # DistributedSampler: in each epoch the ranks see disjoint halves.
    per_epoch = NUM_SAMPLES // 2
    for epoch in range(2):
        seen0 = rank0['seen'][epoch * per_epoch:(epoch + 1) * per_epoch]
        seen1 = rank1['seen'][epoch * per_epoch:(epoch + 1) * per_epoch]
        assert sorted(seen0 + seen1) == list(range(NUM_SAMPLES))
    # --auto-scale-lr sees the effective batch 2 ranks x 2 = 4 against the
    # base batch 2: lr 0.05 -> 0.1, then two MultiStepLR decays of 0.1.
    assert rank0['lr'] == pytest.approx(0.1 * 0.1 * 0.1)


def test_killed_run_resumes_to_the_uninterrupted_state(
        uninterrupted, tmp_path):
    _, expected = uninterrupted
    # Checkpoints every 4 iterations; the kill comes in iteration 10, in the
    # middle of the second epoch, after the checkpoint of iteration 8.
    killed = _launch(tmp_path, '--die-at', '10')
    assert killed.returncode != 0
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read() == str(tmp_path / 'iter_8.pth')
    assert load_checkpoint_file(tmp_path / 'iter_8.pth')['meta']['iter'] == 8

    resumed = _launch(tmp_path, '--resume')
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert 'Resuming epoch 2 after 2 of its 6 iterations' in resumed.stdout
    reports = _reports(tmp_path)
    # Checkpoints hold rank 0's BN statistics (DDP with broadcast_buffers
    # False keeps them per rank), so only rank 0's buffers, which are the
    # ones saved and evaluated, must match.
    assert reports[0]['buffers'] == expected[0]['buffers']
    for got, want in zip(reports, expected):
        assert got['params'] == want['params']
        assert got['lr'] == pytest.approx(want['lr'])
        # After resuming, exactly the batches not trained on yet.
        assert got['seen'] == want['seen'][8 * 2:]


def test_run_without_seed_resumes_with_the_same_data_order(tmp_path):
    """A config without a random seed (MMEngine's default) resumed in the
    middle of an epoch goes on with the interrupted run's shuffle: the
    result equals an uninterrupted run with the seed the first one drew."""
    killed_dir, reference_dir = tmp_path / 'killed', tmp_path / 'reference'
    killed = _launch(killed_dir, '--seed', 'none', '--die-at', '10')
    assert killed.returncode != 0
    seed = load_checkpoint_file(killed_dir / 'iter_8.pth')['meta']['seed']
    reference = _launch(reference_dir, '--seed', str(seed))
    assert reference.returncode == 0, reference.stdout[-3000:]
    resumed = _launch(killed_dir, '--seed', 'none', '--resume')
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f'random seed {seed} of the checkpoint' in resumed.stdout
    for got, want in zip(_reports(killed_dir), _reports(reference_dir)):
        assert got['seen'] == want['seen'][8 * 2:]
        assert got['params'] == want['params']


@pytest.mark.parametrize('signal_name, requeue', [('SIGUSR1', True),
                                                  ('SIGTERM', False)])
def test_signalled_run_stops_after_the_iteration_and_resumes_exactly(
        uninterrupted, tmp_path, signal_name, requeue):
    _, expected = uninterrupted
    requeue_log = tmp_path / 'requeued'
    # The signal reaches rank 1 alone at the start of iteration 8 (0-based),
    # the third of the second epoch; checkpoints are due every 4 iterations.
    # Both ranks stop after iteration 8, with the checkpoint iter_9.pth.
    stopped = _launch(
        tmp_path,
        '--preemptible',
        '--preempt-at',
        '8',
        '--preempt-rank',
        '1',
        '--preempt-signal',
        signal_name,
        '--requeue-log',
        str(requeue_log),
        SLURM_JOB_ID='4242')
    assert stopped.returncode == 0, stopped.stdout[-3000:]
    # Rank 0 logs; it stopped for rank 1's signal.
    assert ('Stop requested (another rank): training stops after iteration '
            f'9 with checkpoint {tmp_path / "iter_9.pth"}') in stopped.stdout
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read() == str(tmp_path / 'iter_9.pth')
    assert load_checkpoint_file(tmp_path / 'iter_9.pth')['meta']['iter'] == 9
    assert not (tmp_path / 'iter_12.pth').exists()
    # Requeued (by rank 0) only after SIGUSR1, the time-limit warning.
    if requeue:
        assert requeue_log.read_text() == '4242'
    else:
        assert not requeue_log.exists()
    for report in _reports(tmp_path):
        assert len(report['seen']) == 9 * 2

    resumed = _launch(tmp_path, '--resume')
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert 'Resuming epoch 2 after 3 of its 6 iterations' in resumed.stdout
    reports = _reports(tmp_path)
    assert reports[0]['buffers'] == expected[0]['buffers']
    for got, want in zip(reports, expected):
        assert got['params'] == want['params']
        assert got['lr'] == pytest.approx(want['lr'])
        assert got['seen'] == want['seen'][9 * 2:]


def test_amp_on_cpu_trains_in_bfloat16_with_two_processes(tmp_path):
    if torch.cuda.is_available():
        pytest.skip('checks the CPU path')
    result = _launch(tmp_path, '--amp', '--max-epochs', '1')
    assert result.returncode == 0, result.stdout[-3000:]
    rank0, rank1 = _reports(tmp_path)
    assert rank0['optim_wrapper'] == 'BF16AutocastOptimWrapper'
    assert rank0['params'] == rank1['params']


def test_rank_that_sees_no_checkpoint_stops_the_resumed_run(tmp_path):
    """Rank 1 resumes from a work dir of its own, empty, as on a node
    where work_dir is not on a shared file system: it would train from
    scratch while rank 0 resumes. Both ranks stop before training, saying
    why, instead of training apart until DDP hangs."""
    work_dir = tmp_path / 'exp'
    first = _launch(work_dir, '--max-epochs', '1')
    assert first.returncode == 0, first.stdout[-3000:]
    assert (work_dir / 'iter_6.pth').exists()
    for rank in range(2):
        os.remove(work_dir / f'rank{rank}.json')

    resumed = _launch(
        work_dir, '--resume', '--unshared-rank', '1', timeout=120)
    assert resumed.returncode != 0
    # Each rank raised the error (torch.distributed.run prefixes the lines
    # of rank r with "[rankr]: ").
    errors = dict(
        re.findall(
            r'^\[rank(\d)\]: mmsecvit\.utils\.errors\.'
            r'UnsupportedEnvironmentError: (.*)$', resumed.stdout, re.M))
    assert sorted(errors) == ['0', '1'], resumed.stdout[-3000:]
    message = errors['0']
    assert errors['1'] == message
    # Saved at the end of the epoch's last iteration, before the epoch
    # counter moved on.
    assert (f'rank 0: iteration 6 (epoch 0), resumed from '
            f'{work_dir / "iter_6.pth"}') in message
    assert (f'rank 1: iteration 0 (epoch 0), nothing resumed (no checkpoint '
            f'found in {work_dir}-rank1)') in message
    assert 'put it on a shared file system' in message
    # Neither rank trained (it would have saved iter_8.pth).
    assert not (work_dir / 'iter_8.pth').exists()
    assert not (work_dir / 'rank0.json').exists()
