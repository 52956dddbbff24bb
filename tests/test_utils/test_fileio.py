# Copyright (c) mmsecvit contributors. All rights reserved.
"""Safe loading and atomic saving of checkpoints."""
import os
import pickle
import stat

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

from mmsecvit.utils import (CheckpointLoadError, atomic_write_bytes, fileio,
                            load_checkpoint_file)


def _mmengine_like_checkpoint():
    """What a Runner checkpoint holds besides tensors: a message hub state
    with HistoryBuffers and numpy scalars, and RNG states."""
    hub = MessageHub.get_instance('test_checkpoint_safe_globals')
    hub.update_scalar('train/loss', 0.5)
    hub.update_info('eta', np.float64(3.0))
    return dict(
        meta=dict(epoch=1, iter=4, seed=0),
        state_dict={'w': torch.ones(3)},
        message_hub=hub.state_dict(),
        rng=dict(
            numpy=np.random.get_state(),
            torch=torch.get_rng_state(),
        ))


class _RunsCode:

    def __reduce__(self):
        return (os.system, ('echo this must never run',))


def test_mmengine_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / 'ckpt.pth'
    torch.save(_mmengine_like_checkpoint(), path)
    # torch's own default (weights_only=True) must accept it too, which is
    # what mmengine's resume relies on.
    for checkpoint in (load_checkpoint_file(path), torch.load(path)):
        buffer = checkpoint['message_hub']['log_scalars']['train/loss']
        assert isinstance(buffer, HistoryBuffer)
        assert buffer.mean() == 0.5
        assert checkpoint['message_hub']['runtime_info']['eta'] == 3.0
        assert checkpoint['rng']['numpy'][1].dtype == np.uint32


def test_checkpoint_that_runs_code_is_refused_and_named(tmp_path):
    path = tmp_path / 'untrusted.pth'
    torch.save({'payload': _RunsCode()}, path)
    with pytest.raises(CheckpointLoadError, match='untrusted.pth') as info:
        load_checkpoint_file(path)
    assert 'system' in str(info.value)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)


@pytest.mark.parametrize(
    'payload',
    [
        np.ndarray.tofile,  # neither the class nor the name
        np.ndarray.max,  # a statistic's name on another class
        HistoryBuffer.register_statistics,  # HistoryBuffer, not a statistic
    ])
def test_getattr_is_allowed_only_for_history_buffer_statistics(
        tmp_path, payload):
    path = tmp_path / 'getattr.pth'
    torch.save({'f': payload}, path)
    with pytest.raises(CheckpointLoadError, match='getattr.pth'):
        load_checkpoint_file(path)


def test_object_arrays_are_refused(tmp_path):
    """Their elements would be unpickled as anything."""
    path = tmp_path / 'objects.pth'
    torch.save({'a': np.array([1, 'text'], dtype=object)}, path)
    with pytest.raises(CheckpointLoadError, match='objects.pth'):
        load_checkpoint_file(path)


@pytest.mark.parametrize('damage',
                         ['truncated', 'garbage', 'empty', 'text'])
def test_corrupt_checkpoint_gives_clear_error_naming_file(tmp_path, damage):
    path = tmp_path / f'{damage}.pth'
    torch.save({'w': torch.arange(1000.)}, path)
    data = path.read_bytes()
    path.write_bytes({
        'truncated': data[:len(data) // 2],
        'garbage': bytes(range(256)) * 8,
        'empty': b'',
        'text': b'half written'
    }[damage])
    with pytest.raises(CheckpointLoadError,
                       match=f'{damage}.pth is truncated or corrupt'):
        load_checkpoint_file(path)


@pytest.mark.parametrize('legacy', [False, True])
def test_a_mapped_checkpoint_has_the_tensors(tmp_path, legacy):
    """``mmap=True`` maps a zip-format file; a legacy one is read whole."""
    path = tmp_path / 'model.pth'
    weights = {'state_dict': {'w': torch.arange(6.).view(2, 3)}}
    torch.save(weights, path, _use_new_zipfile_serialization=not legacy)
    loaded = load_checkpoint_file(path, mmap=True)
    torch.testing.assert_close(loaded['state_dict']['w'],
                               weights['state_dict']['w'])


def test_a_truncated_checkpoint_is_refused_when_mapped_too(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save({'w': torch.arange(1000.)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(CheckpointLoadError, match='cut.pth'):
        load_checkpoint_file(path, mmap=True)


def test_missing_checkpoint_names_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='absent.pth'):
        load_checkpoint_file(tmp_path / 'absent.pth')


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / 'sub' / 'latest.pth'
    atomic_write_bytes(b'old', path)
    atomic_write_bytes(b'new content', path)
    assert path.read_bytes() == b'new content'
    assert os.listdir(tmp_path / 'sub') == ['latest.pth']


def test_failed_atomic_write_keeps_previous_file(tmp_path):
    path = tmp_path / 'latest.pth'
    atomic_write_bytes(b'complete', path)
    with pytest.raises(TypeError):
        atomic_write_bytes(object(), path)  # fails half-way through writing
    assert path.read_bytes() == b'complete'
    assert os.listdir(tmp_path) == ['latest.pth']


@pytest.fixture
def umask():
    """Set the process umask for the test, restore it afterwards."""
    previous = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(previous)


@pytest.mark.skipif(os.name != 'posix', reason='POSIX permissions')
@pytest.mark.parametrize('mask, mode', [(0o022, 0o644), (0o077, 0o600),
                                        (0o002, 0o664)])
def test_atomic_write_gives_new_file_permissions(tmp_path, umask, mask, mode):
    umask(mask)
    fresh = tmp_path / 'fresh.pth'
    replaced = tmp_path / 'replaced.pth'
    replaced.write_bytes(b'old')
    replaced.chmod(0o600)  # e.g. written by mkstemp before
    for path in (fresh, replaced):
        atomic_write_bytes(b'new', path)
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name
    assert sorted(os.listdir(tmp_path)) == ['fresh.pth', 'replaced.pth']


def test_atomic_write_tries_another_temporary_name_when_taken(
        tmp_path, monkeypatch):
    names = iter(['taken', 'taken', 'free'])
    monkeypatch.setattr(fileio.secrets, 'token_hex', lambda n: next(names))
    (tmp_path / '.latest.pth.taken.tmp').write_bytes(b'someone else')
    atomic_write_bytes(b'complete', tmp_path / 'latest.pth')
    assert (tmp_path / 'latest.pth').read_bytes() == b'complete'
    assert (tmp_path / '.latest.pth.taken.tmp').read_bytes() == b'someone else'


def test_stale_temporary_files_are_removed(tmp_path):
    """What a write killed before its rename leaves (SIGKILL: no cleanup
    runs), and nothing else."""
    fd, stale = fileio._create_temp_file(str(tmp_path), 'iter_8.pth')
    os.write(fd, b'half a checkpoint')
    os.close(fd)
    atomic_write_bytes(b'complete', tmp_path / 'iter_4.pth')
    kept = ['.bashrc', '.latest.pth.taken.tmp', 'iter_4.pth', 'notes.tmp']
    for name in kept[:2] + kept[3:]:
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / '.x.0123456789abcdef.tmp').mkdir()
    removed = fileio.remove_stale_temp_files(str(tmp_path))
    assert removed == [(os.path.basename(stale), 17)]
    assert sorted(os.listdir(tmp_path)) == sorted(
        kept + ['.x.0123456789abcdef.tmp'])
    assert fileio.remove_stale_temp_files(str(tmp_path / 'missing')) == []


@pytest.mark.parametrize('message', [
    # torch 2.6: the refused global in the first paragraph.
    'Weights only load failed. In PyTorch 2.6, we changed the default value '
    'of the `weights_only` argument. Do it only if you got the file from a '
    'trusted source.\nTrying to load unsupported GLOBAL posix.system whose '
    'module posix is blocked.\n\nCheck the documentation of torch.load.',
    # torch 2.13: a paragraph of its own.
    'Weights only load failed. Do it only if you trust the source.\n\n\n'
    'Trying to load unsupported GLOBAL posix.system whose module posix is '
    'blocked.\n\nCheck the documentation of torch.load.',
])
def test_refusal_names_the_global_in_either_message_layout(message):
    assert fileio._refusal_reason(message) == (
        'Trying to load unsupported GLOBAL posix.system whose module posix '
        'is blocked.')
