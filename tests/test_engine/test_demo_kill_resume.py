# Copyright (c) mmsecvit contributors. All rights reserved.
"""The demo task (UperNet, small SecViT arch, synthetic ADE20K data) trained
by ``tools/dist_train.sh`` with 2 CPU processes (gloo), killed with SIGKILL
mid-epoch and resumed with ``--resume``: the final weights equal those of an
uninterrupted run.

``test_distributed_resume.py`` checks the same with a toy model and a kill
from inside the training process; here the launcher and both ranks (each
rank in a session of its own) are killed from outside right after a
mid-epoch checkpoint is complete, as a node failure would, and the real
model, data pipeline (random resize, crop, flip), drop path, optimizer and
lr schedule of the demo config run.
"""
import os
import os.path as osp
import signal
import subprocess
import time

import pytest
import torch
from test_dist_train_demo import DEMO_CONFIG, REPO, SMALL_CONFIG

from mmsecvit.testing import free_port
from mmsecvit.utils import load_checkpoint_file

# 16 training images, 2 ranks x batch 2 (the demo's; UPerHead's pooling
# branch needs 2 images for BN): 4 iterations per epoch, 8 in all.
# Checkpoints every 2 iterations: iter_2.pth is in the middle of epoch 1.
NUM_TRAIN = 16
ITERS_PER_EPOCH = NUM_TRAIN // (2 * 2)
MAX_EPOCHS = 2
KILL_AFTER_ITER = 2

# Epoch-based (the demo config is iteration-based, with an InfiniteSampler):
# the loop that ``prepare_runtime`` makes resumable mid-epoch, where batches
# are skipped without loading them, so the transforms' RNG stays exact with
# num_workers=0 (docs/distributed.md, "Nondeterminism that remains").
EPOCH_CONFIG = """
_base_ = {small!r}
train_dataloader = dict(sampler=dict(type='DefaultSampler', shuffle=True))
log_processor = dict(by_epoch=True)
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop',
                 max_epochs={max_epochs}, val_interval=100)
default_hooks = dict(
    checkpoint=dict(by_epoch=False, interval=2, max_keep_ckpts=-1),
    logger=dict(interval=1))
randomness = dict(seed=0, deterministic=True)
"""


def _start(config, work_dir, *args, log_name=None):
    """``tools/dist_train.sh`` in a new session (its own process group)."""
    command = [
        'bash',
        osp.join(REPO, 'tools/dist_train.sh'),
        str(config), '2', '--work-dir',
        str(work_dir), *args
    ]
    log = open(f'{work_dir}-{log_name or "train"}.log', 'w')
    process = subprocess.Popen(
        command,
        env=dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1'),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True)
    process.log_file = log
    return process


def _output(process):
    process.log_file.close()
    with open(process.log_file.name) as f:
        return f.read()


def _finish(process, timeout=300):
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_all(process)
        process.wait()
    return process.returncode, _output(process)


def _descendants(pid):
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                # pid (comm) state ppid ...; comm may hold spaces.
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (ValueError, OSError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _kill_all(process):
    """SIGKILL the launcher's process group and every process below it.

    ``torch.distributed.run`` starts each rank in a session of its own, so
    killing the launcher's group alone leaves the ranks training.
    """
    tree = _descendants(process.pid)
    os.killpg(process.pid, signal.SIGKILL)
    for pid in tree:
        try:
            os.killpg(pid, signal.SIGKILL)  # a rank leads its own group
        except (ProcessLookupError, PermissionError):
            pass
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _last_checkpoint(work_dir):
    try:
        with open(osp.join(work_dir, 'last_checkpoint')) as f:
            return f.read()
    except FileNotFoundError:
        return None


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the CPU path')
def test_demo_run_killed_mid_epoch_resumes_to_the_uninterrupted_state(
        tmp_path):
    from mmsecvit.datasets.demo import make_demo_data
    make_demo_data(
        str(tmp_path / 'data'), num_train=NUM_TRAIN, num_val=2, coco=False)
    small = tmp_path / 'small.py'
    small.write_text(
        SMALL_CONFIG.format(
            base=DEMO_CONFIG,
            data_root=str(tmp_path / 'data/ade/ADEChallengeData2016')))
    config = tmp_path / 'epoch.py'
    config.write_text(
        EPOCH_CONFIG.format(small=str(small), max_epochs=MAX_EPOCHS))
    last_iter = MAX_EPOCHS * ITERS_PER_EPOCH

    # Run 1: uninterrupted.
    reference = tmp_path / 'reference'
    returncode, output = _finish(_start(config, reference))
    assert returncode == 0, output[-3000:]

    # Run 2: killed (SIGKILL, launcher and both ranks) as soon as the
    # checkpoint of iteration 2 is complete, i.e. once ``last_checkpoint``
    # names it (it is written after the checkpoint, atomically).
    work_dir = tmp_path / 'killed'
    checkpoint = str(work_dir / f'iter_{KILL_AFTER_ITER}.pth')
    process = _start(config, work_dir)
    deadline = time.monotonic() + 300
    while (_last_checkpoint(work_dir) != checkpoint and process.poll() is None
           and time.monotonic() < deadline):
        time.sleep(0.02)
    if process.poll() is None:
        _kill_all(process)
    returncode, output = _finish(process)
    assert returncode == -signal.SIGKILL, output[-3000:]
    assert _last_checkpoint(work_dir) == checkpoint
    # Killed before the next checkpoint, 2 iterations later.
    assert not osp.exists(work_dir / f'iter_{KILL_AFTER_ITER + 2}.pth')
    assert load_checkpoint_file(checkpoint)['meta']['iter'] == KILL_AFTER_ITER

    # Run 3: resumed in the same work dir from ``last_checkpoint``.
    returncode, output = _finish(
        _start(config, work_dir, '--resume', log_name='resumed'))
    assert returncode == 0, output[-3000:]
    assert (f'Resuming epoch 1 after {KILL_AFTER_ITER} of its '
            f'{ITERS_PER_EPOCH} iterations' in output), output[-3000:]

    # Only rank 0 saves: its weights (equal on both ranks by DDP) and its BN
    # statistics. Both are restored exactly on resume (docs/distributed.md);
    # CPU kernels are deterministic, so the comparison is bit for bit.
    want = load_checkpoint_file(reference / f'iter_{last_iter}.pth')
    got = load_checkpoint_file(work_dir / f'iter_{last_iter}.pth')
    assert got['meta']['iter'] == want['meta']['iter'] == last_iter
    # Saved in the last iteration, before the loop counts the epoch done.
    assert got['meta']['epoch'] == want['meta']['epoch'] == MAX_EPOCHS - 1
    assert got['state_dict'].keys() == want['state_dict'].keys()
    for name, tensor in want['state_dict'].items():
        torch.testing.assert_close(
            got['state_dict'][name],
            tensor,
            rtol=0,
            atol=0,
            msg=lambda message: f'{name}: {message}')
