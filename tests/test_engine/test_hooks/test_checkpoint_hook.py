# Copyright (c) mmsecvit contributors. All rights reserved.
"""The file backend :class:`ResumableCheckpointHook` chooses for where the
checkpoints go, RNG states restored after a checkpoint was loaded onto a
GPU, simulated on the CPU, and the check that the ranks of a distributed run
resumed alike, with the collective simulated in one process."""
import logging
import random
import sys
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
import torch
from mmengine.fileio import LocalBackend, PetrelBackend
from mmengine.logging import MessageHub, MMLogger

from mmsecvit.engine import ResumableCheckpointHook
from mmsecvit.engine.hooks import checkpoint_hook
from mmsecvit.engine.hooks.checkpoint_hook import (get_rng_states,
                                                   set_rng_states)
from mmsecvit.utils import ATOMIC_BACKEND_ARGS, AtomicLocalBackend
from mmsecvit.utils.errors import UnsupportedEnvironmentError


@pytest.fixture
def runner(tmp_path):
    """Just what the hook's ``before_train`` and ``_save`` use; checkpoints
    are not written, their ``save_checkpoint`` arguments are recorded."""
    saved = []

    def save_checkpoint(out_dir, filename, *args, **kwargs):
        saved.append(dict(kwargs, out_dir=out_dir, filename=filename))

    return SimpleNamespace(
        iter=0,
        epoch=0,
        cfg=dict(),
        work_dir=str(tmp_path / 'exp'),
        logger=MMLogger.get_instance('test_checkpoint_hook'),
        message_hub=MessageHub.get_instance('test_checkpoint_hook'),
        save_checkpoint=save_checkpoint,
        saved=saved)


@pytest.fixture
def fake_petrel_client(monkeypatch):
    """Let MMEngine's PetrelBackend be created without petrel_client or a
    cluster to talk to."""
    client = ModuleType('petrel_client.client')
    client.Client = lambda **kwargs: object()
    package = ModuleType('petrel_client')
    package.client = client
    monkeypatch.setitem(sys.modules, 'petrel_client', package)
    monkeypatch.setitem(sys.modules, 'petrel_client.client', client)


def _save_once(hook, runner):
    hook.before_train(runner)
    hook._save(runner, 'iter_1.pth', {}, by_epoch=False)
    (saved, ) = runner.saved
    return saved


# MMEngine's CheckpointHook cannot save to http(s):// (HTTPBackend has no
# join_path), so only the prefixes of the Petrel backend are tried.
@pytest.mark.parametrize('out_dir, backend_type', [
    ('s3://bucket/ckpts', PetrelBackend),
    ('petrel://bucket/ckpts', PetrelBackend),
    ('cluster1:s3://bucket/ckpts', PetrelBackend),
])
def test_remote_out_dir_gets_the_backend_of_its_prefix(
        runner, fake_petrel_client, out_dir, backend_type):
    hook = ResumableCheckpointHook(interval=1, out_dir=out_dir)
    saved = _save_once(hook, runner)
    assert type(hook.file_backend) is backend_type
    assert hook.out_dir == f'{out_dir}/exp'
    assert saved['out_dir'] == f'{out_dir}/exp'
    assert saved['backend_args'] is None


def test_remote_out_dir_keeps_the_backend_args_given(runner,
                                                     fake_petrel_client):
    backend_args = dict(backend='petrel', path_mapping={'a/': 'b/'})
    hook = ResumableCheckpointHook(
        interval=1, out_dir='s3://bucket/ckpts', backend_args=backend_args)
    saved = _save_once(hook, runner)
    assert type(hook.file_backend) is PetrelBackend
    assert hook.file_backend.path_mapping == {'a/': 'b/'}
    assert saved['backend_args'] == backend_args


@pytest.mark.parametrize('local_out_dir', [False, True])
def test_local_destination_is_written_atomically(runner, tmp_path,
                                                 local_out_dir):
    out_dir = str(tmp_path / 'ckpts') if local_out_dir else None
    hook = ResumableCheckpointHook(interval=1, out_dir=out_dir)
    saved = _save_once(hook, runner)
    assert type(hook.file_backend) is AtomicLocalBackend
    assert saved['backend_args'] == ATOMIC_BACKEND_ARGS
    expected_dir = (tmp_path / 'ckpts' / 'exp') if local_out_dir else (
        tmp_path / 'exp')
    assert saved['out_dir'] == str(expected_dir)


def test_temporary_files_of_killed_writes_are_removed(runner, tmp_path):
    """A job killed while it wrote a checkpoint left a hidden file as
    large as the checkpoint; the next run's rank 0 removes it."""
    directory = tmp_path / 'exp'
    directory.mkdir()
    stale = directory / '.iter_8.pth.e2fa2ab1ccd84f5b.tmp'
    stale.write_bytes(b'half a checkpoint')
    (directory / 'iter_4.pth').write_bytes(b'complete')
    _save_once(ResumableCheckpointHook(interval=1), runner)
    assert not stale.exists()
    assert (directory / 'iter_4.pth').read_bytes() == b'complete'


def _files(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.fixture
def writing_runner(runner, tmp_path):
    """The runner, with a save_checkpoint that writes the file and records
    what the directory held when it was called."""
    (tmp_path / 'exp').mkdir()
    runner.calls = []

    def save_checkpoint(out_dir, filename, *args, **kwargs):
        runner.calls.append((filename, _files(tmp_path / 'exp')))
        if filename == runner.__dict__.get('fail_on'):
            raise OSError('disk full')
        (tmp_path / 'exp' / filename).write_bytes(b'complete')

    runner.save_checkpoint = save_checkpoint
    return runner


def test_outdated_checkpoint_is_removed_after_the_new_one_is_saved(
        writing_runner, tmp_path):
    hook = ResumableCheckpointHook(
        interval=1, by_epoch=False, max_keep_ckpts=2)
    hook.before_train(writing_runner)
    for step in (1, 2, 3):
        hook._save_checkpoint_with_step(writing_runner, step, {})
    # iter_1.pth was still there while iter_3.pth was written.
    assert writing_runner.calls[-1] == (
        'iter_3.pth', ['iter_1.pth', 'iter_2.pth', 'last_checkpoint'])
    assert _files(tmp_path / 'exp') == [
        'iter_2.pth', 'iter_3.pth', 'last_checkpoint'
    ]
    assert (tmp_path / 'exp' / 'last_checkpoint').read_text() == str(
        tmp_path / 'exp' / 'iter_3.pth')


def test_last_checkpoint_names_a_file_only_once_it_is_complete(
        writing_runner, tmp_path):
    hook = ResumableCheckpointHook(
        interval=1, by_epoch=False, max_keep_ckpts=1)
    hook.before_train(writing_runner)
    hook._save_checkpoint_with_step(writing_runner, 1, {})
    writing_runner.fail_on = 'iter_2.pth'
    with pytest.raises(OSError, match='disk full'):
        hook._save_checkpoint_with_step(writing_runner, 2, {})
    # Still the complete one, and it was not removed for the failed one.
    assert (tmp_path / 'exp' / 'last_checkpoint').read_text() == str(
        tmp_path / 'exp' / 'iter_1.pth')
    assert _files(tmp_path / 'exp') == ['iter_1.pth', 'last_checkpoint']


def test_temporary_files_stay_for_another_backend(runner, tmp_path):
    directory = tmp_path / 'exp'
    directory.mkdir()
    stale = directory / '.iter_8.pth.e2fa2ab1ccd84f5b.tmp'
    stale.write_bytes(b'x')
    _save_once(
        ResumableCheckpointHook(
            interval=1, backend_args=dict(backend='local')), runner)
    assert stale.exists()


def test_local_destination_keeps_the_backend_args_given(runner):
    hook = ResumableCheckpointHook(
        interval=1, backend_args=dict(backend='local'))
    saved = _save_once(hook, runner)
    assert type(hook.file_backend) is LocalBackend
    assert saved['backend_args'] == dict(backend='local')


def test_backend_follows_out_dir_set_after_construction(
        runner, fake_petrel_client):
    hook = ResumableCheckpointHook(interval=1)
    assert hook.backend_args == ATOMIC_BACKEND_ARGS
    hook.out_dir = 's3://bucket/ckpts'
    saved = _save_once(hook, runner)
    assert type(hook.file_backend) is PetrelBackend
    assert saved['backend_args'] is None


class _OnCuda:
    """Stands for a CUDA tensor, as ``torch.load(map_location='cuda:0')``
    returns it: only ``.cpu()`` gives the byte tensor back."""

    device = torch.device('cuda', 0)

    def __init__(self, tensor):
        self._tensor = tensor

    def cpu(self):
        return self._tensor


def _check_cpu_byte_tensor(state):
    # What the generators check (in C++) before they accept a state.
    if getattr(state, 'device', None) != torch.device('cpu'):
        raise TypeError('RNG state must be a torch.ByteTensor')


@pytest.fixture
def cuda_devices(monkeypatch):
    """Pretend CUDA with ``count`` visible devices; return the calls to
    ``torch.cuda.set_rng_state`` as ``(device index, state)``."""
    calls = []

    def set_rng_state(state, device='cuda'):
        _check_cpu_byte_tensor(state)
        index = device if isinstance(device, int) else 0
        if index >= torch.cuda.device_count():
            raise IndexError('list index out of range')
        calls.append((index, state))

    def pretend(count):
        monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
        monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)
        # set_rng_state_all looks the function up in torch.cuda.random.
        monkeypatch.setattr(torch.cuda, 'set_rng_state', set_rng_state)
        monkeypatch.setattr(torch.cuda.random, 'set_rng_state', set_rng_state)
        return calls

    return pretend


@pytest.fixture
def torch_rng_checked(monkeypatch):
    real = torch.set_rng_state

    def set_rng_state(state):
        _check_cpu_byte_tensor(state)
        real(state)

    monkeypatch.setattr(torch, 'set_rng_state', set_rng_state)


def _saved_on_cuda(num_cuda_states):
    states = get_rng_states()
    states['torch'] = _OnCuda(states['torch'])
    states['cuda'] = [
        _OnCuda(torch.full((16, ), index, dtype=torch.uint8))
        for index in range(num_cuda_states)
    ]
    return states


@pytest.fixture
def warnings_logged(monkeypatch):
    messages = []

    def print_log(message, logger=None, level=logging.INFO):
        if level >= logging.WARNING:
            messages.append(message)

    monkeypatch.setattr(checkpoint_hook, 'print_log', print_log)
    return messages


def test_states_loaded_onto_a_gpu_are_restored_per_device(
        cuda_devices, torch_rng_checked, warnings_logged):
    calls = cuda_devices(2)
    states = _saved_on_cuda(2)
    expected = torch.rand(3)  # the draw right after the states were taken
    random.random(), np.random.rand(), torch.rand(5)  # move every RNG on
    set_rng_states(states)
    torch.testing.assert_close(torch.rand(3), expected)
    restored = [(index, state[0].item()) for index, state in calls]
    assert restored == [(0, 0), (1, 1)]
    assert warnings_logged == []


def test_fewer_visible_gpus_restore_those_visible_and_say_so(
        cuda_devices, torch_rng_checked, warnings_logged):
    calls = cuda_devices(1)
    set_rng_states(_saved_on_cuda(4))
    assert [index for index, _ in calls] == [0]
    (message, ) = warnings_logged
    assert 'CUDA RNG states of 4 devices and 1 are visible' in message


def test_cuda_states_without_cuda_are_skipped_with_a_warning(
        monkeypatch, torch_rng_checked, warnings_logged):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    set_rng_states(_saved_on_cuda(2))
    (message, ) = warnings_logged
    assert 'CUDA is not available' in message


def _rank(runner, cfg=None, checkpoint_iter=None):
    """A hook and its runner as one rank starts training: it loaded a
    checkpoint of iteration ``checkpoint_iter`` (6 per epoch) if one is
    given, with ``cfg`` (resume, load_from)."""
    hook = ResumableCheckpointHook(interval=1)
    rank_runner = SimpleNamespace(**vars(runner))
    rank_runner.cfg = dict(cfg or {})
    if checkpoint_iter is not None:
        hook.after_load_checkpoint(rank_runner, dict(meta={}))
        rank_runner.iter = checkpoint_iter
        rank_runner.epoch = checkpoint_iter // 6
    return hook, rank_runner


class _Gathered(Exception):
    pass


def _start_training(monkeypatch, ranks):
    """Call ``before_train`` on each ``(hook, runner)`` as if they were the
    ranks of one distributed run: every ``all_gather_object`` returns the
    objects of all ranks. Returns what each rank raised (None if nothing)
    and how many collectives each one called."""
    monkeypatch.setattr(checkpoint_hook, 'get_world_size', lambda: len(ranks))
    sent = []

    def collect(obj):
        sent.append(obj)
        raise _Gathered

    monkeypatch.setattr(checkpoint_hook, 'all_gather_object', collect)
    for hook, runner in ranks:
        with pytest.raises(_Gathered):
            hook.before_train(runner)

    calls = []

    def gather(obj):
        calls.append(obj)
        return list(sent)

    monkeypatch.setattr(checkpoint_hook, 'all_gather_object', gather)
    errors = []
    for hook, runner in ranks:
        try:
            hook.before_train(runner)
        except UnsupportedEnvironmentError as error:
            errors.append(error)
        else:
            errors.append(None)
    return errors, len(calls)


def test_ranks_that_resumed_alike_start_training(monkeypatch, runner,
                                                 warnings_logged):
    cfg = dict(resume=True, load_from='/shared/exp/iter_8.pth')
    ranks = [_rank(runner, cfg, checkpoint_iter=8) for _ in range(2)]
    errors, calls = _start_training(monkeypatch, ranks)
    assert errors == [None, None]
    assert calls == 2
    # before_train went on to set the hook up.
    assert all(type(hook.file_backend) is AtomicLocalBackend
               for hook, _ in ranks)


def test_ranks_that_all_start_afresh_start_training(monkeypatch, runner):
    ranks = [_rank(runner, dict(resume=True)) for _ in range(3)]
    errors, _ = _start_training(monkeypatch, ranks)
    assert errors == [None, None, None]


def test_rank_that_missed_the_checkpoint_stops_every_rank(
        monkeypatch, runner, warnings_logged):
    cfg = dict(resume=True, load_from='/shared/exp/iter_8.pth')
    ranks = [
        _rank(runner, cfg, checkpoint_iter=8),
        _rank(runner, cfg, checkpoint_iter=8),
        # This node saw no checkpoint: prepare_runtime left load_from unset.
        _rank(runner, dict(resume=True)),
    ]
    errors, _ = _start_training(monkeypatch, ranks)
    assert all(errors)
    message = str(errors[0])
    assert all(str(error) == message for error in errors)
    assert ('ranks 0-1: iteration 8 (epoch 1), resumed from '
            '/shared/exp/iter_8.pth') in message
    assert (f'rank 2: iteration 0 (epoch 0), nothing resumed (no checkpoint '
            f'found in {runner.work_dir}): training from scratch') in message
    assert 'shared file system' in message
    assert '--resume PATH' in message


def test_ranks_resumed_from_different_iterations_stop(monkeypatch, runner,
                                                      warnings_logged):
    # A stale NFS cache shows one node an older checkpoint.
    ranks = [
        _rank(runner, dict(resume=True, load_from='/exp/iter_8.pth'),
              checkpoint_iter=8),
        _rank(runner, dict(resume=True, load_from='/exp/iter_4.pth'),
              checkpoint_iter=4),
    ]
    errors, _ = _start_training(monkeypatch, ranks)
    assert all(errors)
    assert 'rank 0: iteration 8 (epoch 1)' in str(errors[1])
    assert 'rank 1: iteration 4 (epoch 0)' in str(errors[1])


def test_rank_that_started_from_the_initial_weights_stops(
        monkeypatch, runner, warnings_logged):
    # Without a checkpoint, prepare_runtime turns resume off and loads the
    # config's load_from_if_no_checkpoint: that rank still gathers.
    ranks = [
        _rank(runner, dict(resume=True, load_from='/exp/iter_8.pth'),
              checkpoint_iter=8),
        _rank(runner, dict(resume=False, load_from='/weights/init.pth'),
              checkpoint_iter=0),
    ]
    errors, calls = _start_training(monkeypatch, ranks)
    assert calls == 2
    assert all(errors)
    assert ('rank 1: iteration 0 (epoch 0), weights loaded from '
            '/weights/init.pth') in str(errors[0])


def test_single_process_gathers_nothing(monkeypatch, runner):

    def gather(obj):
        raise AssertionError('no collective in a single-process run')

    monkeypatch.setattr(checkpoint_hook, 'all_gather_object', gather)
    hook, rank_runner = _rank(runner, dict(resume=True))
    hook.before_train(rank_runner)
