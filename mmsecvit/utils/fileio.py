# Copyright (c) mmsecvit contributors. All rights reserved.
"""Safe loading and atomic saving of checkpoints.

Torch >= 2.6 loads checkpoints with ``weights_only=True`` by default, which
refuses every Python global that is not allow-listed. MMEngine 0.10.7 calls
``torch.load`` without ``weights_only`` and stores a few of its own objects
(the message hub's ``HistoryBuffer``, numpy scalars and arrays) in every
checkpoint it writes, so ``--resume`` fails out of the box. We allow-list
exactly those objects instead of falling back to ``weights_only=False``, which
would let a checkpoint from an untrusted source run arbitrary code.
"""
import os
import os.path as osp
import pickle
import re
import secrets
import tempfile
import zipfile
from typing import Any, Callable, Dict, List, Tuple, Union

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
from mmengine.logging import HistoryBuffer

from .errors import CorruptFileError, MissingFileError

# HistoryBuffer pickles its statistics methods as ``getattr(HistoryBuffer,
# 'mean')`` and so on; these are the only attribute look-ups allowed.
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
# bool, signed and unsigned integers, floats: what logs and RNG states hold.
_NUMERIC_DTYPE_CODES = '?bhilqBHILQefd'


class CheckpointLoadError(CorruptFileError, RuntimeError):
    """A checkpoint file exists but cannot be loaded (corrupt, truncated, or
    holding objects that are not allow-listed)."""


def _history_buffer_method(owner, name: str):
    """Stand-in for ``getattr`` while unpickling: only resolves the statistics
    methods of :class:`HistoryBuffer`, never anything else."""
    if owner is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'Refusing getattr({owner!r}, {name!r}) while loading a checkpoint: '
        f'only HistoryBuffer.{{{", ".join(_HISTORY_BUFFER_METHODS)}}} may be '
        'looked up.')


def _numpy_reconstructors():
    """The numpy functions that rebuild arrays and scalars, under the names
    written by numpy 2 (``numpy._core``) and numpy 1 (``numpy.core``)."""
    multiarray = np._core.multiarray if hasattr(
        np, '_core') else np.core.multiarray
    entries = []
    for func in (multiarray._reconstruct, multiarray.scalar):
        for module in ('numpy._core.multiarray', 'numpy.core.multiarray'):
            entries.append((func, f'{module}.{func.__name__}'))
    return entries


def checkpoint_safe_globals() -> list:
    """The globals that MMEngine checkpoints hold, for
    :func:`torch.serialization.add_safe_globals`.

    Found by saving checkpoints with a Runner (message hub, optimizer,
    parameter schedulers, RNG states of
    :class:`mmsecvit.engine.hooks.RNGStateHook`) and listing what
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` reports.

    Returns:
        list: Objects, or ``(object, qualified name)`` pairs.
    """
    return [
        HistoryBuffer,
        (_history_buffer_method, 'builtins.getattr'),
        (_history_buffer_method, '__builtin__.getattr'),
        np.ndarray,
        np.dtype,
        *_numpy_reconstructors(),
        # Unpickled dtypes are instances of per-type classes (numpy >= 1.25),
        # e.g. Float64DType; only plain numeric ones, never the object dtype.
        *[type(np.dtype(code)) for code in _NUMERIC_DTYPE_CODES],
    ]


def register_checkpoint_safe_globals() -> None:
    """Allow-list :func:`checkpoint_safe_globals` for ``weights_only``
    loading in this process (idempotent).

    Does nothing on a torch without ``add_safe_globals`` (< 2.4): importing
    mmsecvit runs this before its version check, which then refuses that
    torch with a message saying what to install.
    """
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:
        add_safe_globals(checkpoint_safe_globals())


def load_checkpoint_file(path: Union[str, os.PathLike],
                         map_location: Any = 'cpu',
                         mmap: bool = False) -> Dict:
    """Load a local checkpoint with ``weights_only=True``.

    Args:
        path (str | os.PathLike): The checkpoint file.
        map_location: Same as :func:`torch.load`. Defaults to 'cpu'.
        mmap (bool): Map the tensors' bytes from the file instead of reading
            them (``torch.load(mmap=True)``): cheap for a look at a large
            file's keys and shapes. A file in torch's legacy (non-zip)
            format is read whole. Defaults to False.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        CheckpointLoadError: If the file is truncated or corrupt, or holds
            objects that are not allow-listed; the message names the file.
    """
    path = osp.expanduser(os.fspath(path))
    if not osp.isfile(path):
        raise MissingFileError(f'Checkpoint file not found: {path}')
    register_checkpoint_safe_globals()
    try:
        return torch.load(
            path,
            map_location=map_location,
            weights_only=True,
            mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        raise CheckpointLoadError(_explain_unpickling_error(path,
                                                            error)) from error
    except Exception as error:  # torch raises many types for broken bytes
        raise CheckpointLoadError(
            f'Checkpoint file {path} is truncated or corrupt and cannot be '
            f'loaded ({type(error).__name__}: {_first_line(error)}). Use an '
            'earlier checkpoint or download/copy the file again.') from error


def _explain_unpickling_error(path: str, error: Exception) -> str:
    """Say whether the file is corrupt or holds objects we refuse."""
    if _is_intact_zip(path):
        refused = _refusal_reason(str(error))
        return (f'Checkpoint file {path} holds Python objects that are not '
                f'allow-listed for safe loading ({refused}). It was not '
                'loaded because unpickling them could run code. If you '
                'trust the file, re-save its tensors as a plain state dict.')
    return (f'Checkpoint file {path} is truncated or corrupt and cannot be '
            f'loaded: it is not a readable PyTorch checkpoint. Use an earlier '
            'checkpoint or download/copy the file again.')


def _is_intact_zip(path: str) -> bool:
    """Whether ``path`` is a complete zip archive (torch's file format)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def _refusal_reason(message: str) -> str:
    """The part of torch's message that names what was refused: the line
    about the unsupported global (torch 2.6 puts it in its first
    paragraph), else the first paragraph that is not boilerplate."""
    for line in message.splitlines():
        line = line.strip().replace('WeightsUnpickler error: ', '')
        if 'unsupported global' in line.lower():
            return line
    boilerplate = ('Weights only load failed', 'Check the documentation',
                   'Please file an issue')
    for paragraph in message.split('\n\n'):
        paragraph = paragraph.strip()
        if paragraph and not paragraph.startswith(boilerplate):
            return paragraph.replace('WeightsUnpickler error: ', '')
    return _first_line(Exception(message))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else 'empty file'


def atomic_write_bytes(data: bytes, path: Union[str, os.PathLike]) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or
    the complete new one, never a partial file.

    The bytes go to a temporary file in the same directory, are flushed to
    disk (``fsync``), and the temporary file is renamed onto ``path`` with
    :func:`os.replace`, which is atomic on POSIX and Windows.

    The file gets the permissions of any newly created file, as with
    ``open(path, 'wb')`` on a new path: ``0o666`` less the umask (or what
    the directory's default ACL says), e.g. ``0o644`` under the usual umask
    ``0o022``, so that others on a shared file system can read checkpoints
    when the umask allows it. A file that is replaced does not keep its
    mode: the result is a new file.

    Args:
        data (bytes): The content.
        path (str | os.PathLike): The destination.
    """
    path = os.fspath(path)
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    _write_then_replace(directory, path, lambda f: f.write(data))


# Flags of a temporary file that is created, never opened if it exists (nor
# through a symbolic link); binary on Windows.
#: Random bytes in a temporary file's name (twice as many hex digits).
_TEMP_TOKEN_BYTES = 8

_TEMP_FILE_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_NOFOLLOW', 0)
    | getattr(os, 'O_BINARY', 0))


def _create_temp_file(directory: str, basename: str) -> Tuple[int, str]:
    """Create a uniquely named empty file next to ``basename``.

    Unlike :func:`tempfile.mkstemp`, which creates the file with mode
    ``0o600`` whatever the umask, the file is created with mode ``0o666``
    and the kernel applies the umask (or the directory's default ACL), as
    for any new file. Reading the umask ourselves would need
    ``os.umask``, which can only be read by setting it, and so changes it
    for every thread of the process for a moment.

    Args:
        directory (str): Where to create the file.
        basename (str): Name of the file it stands for.

    Returns:
        tuple[int, str]: Its file descriptor, open for writing, and path.
    """
    for _ in range(tempfile.TMP_MAX):
        tmp_path = osp.join(
            directory,
            f'.{basename}.{secrets.token_hex(_TEMP_TOKEN_BYTES)}.tmp')
        try:
            return os.open(tmp_path, _TEMP_FILE_FLAGS, 0o666), tmp_path
        except FileExistsError:
            continue
    raise FileExistsError(
        f'Could not create a temporary file for {basename} in {directory}: '
        f'{tempfile.TMP_MAX} names were taken.')


#: The temporary files :func:`_create_temp_file` names: ``.NAME.HEX.tmp``.
_TEMP_FILE_NAME = re.compile(
    rf'^\..+\.[0-9a-f]{{{2 * _TEMP_TOKEN_BYTES}}}\.tmp$')


def remove_stale_temp_files(directory: str) -> List[Tuple[str, int]]:
    """Remove the temporary files that atomic writes into ``directory``
    left behind.

    A write ends with the temporary file renamed or removed, unless its
    process was killed (e.g. SIGKILL after a scheduler's grace period, while
    a checkpoint was being written). Such a file is as large as the
    checkpoint and hidden (``.epoch_3.pth.<hex>.tmp``). Call this only where
    no other process writes into ``directory`` at the same time.

    Returns:
        list[tuple[str, int]]: The names removed, with their sizes in bytes.
    """
    removed = []
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return removed
    for name in names:
        path = osp.join(directory, name)
        if not _TEMP_FILE_NAME.match(name) or not osp.isfile(path):
            continue
        try:
            size = osp.getsize(path)
            os.remove(path)
        except OSError:
            continue
        removed.append((name, size))
    return removed


def _write_then_replace(directory: str, path: str,
                        write: Callable) -> None:
    fd, tmp_path = _create_temp_file(directory, osp.basename(path))
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Persist the rename itself (POSIX); a no-op where unsupported."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(text: str, path: Union[str, os.PathLike]) -> None:
    """Text version of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(text.encode('utf-8'), path)


class AtomicLocalBackend(LocalBackend):
    """Local file backend whose writes are atomic (see
    :func:`atomic_write_bytes`).

    MMEngine's :func:`~mmengine.runner.save_checkpoint` serialises the
    checkpoint in memory and hands the bytes to the backend's ``put``; with
    this backend a crash while writing leaves the previous file intact and
    never a truncated checkpoint. Select it with
    ``backend_args=dict(backend='atomic_local')``.
    """

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        atomic_write_bytes(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        atomic_write_bytes(obj.encode(encoding), filepath)


ATOMIC_BACKEND_ARGS = dict(backend='atomic_local')
register_backend('atomic_local', AtomicLocalBackend, force=True)
