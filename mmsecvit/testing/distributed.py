# Copyright (c) mmsecvit contributors. All rights reserved.
"""Processes that play the ranks of a distributed job on one machine."""
import os
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch.multiprocessing as mp


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def run_ranks(
        args: Sequence[str],
        world_size: int = 2,
        env: Optional[Dict[str, str]] = None,
        timeout: float = 300,
        merge_stderr: bool = False) -> List[Tuple[int, str, Optional[str]]]:
    """Start ``python ARGS`` once per rank, as ``torch.distributed.run``
    would (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT`` set, one thread each), and wait for all of them.

    A rank still running after ``timeout`` seconds raises
    :class:`subprocess.TimeoutExpired`; every rank is killed on the way out
    either way, so a hanging rank never outlives the caller.

    Args:
        args (Sequence[str]): The arguments after ``python`` (a script or
            ``-c CODE``, then its own arguments).
        world_size (int): How many ranks. Defaults to 2.
        env (dict, optional): The environment of every rank before the
            rank variables are added. Defaults to ``os.environ``.
        timeout (float): Seconds to wait for each rank. Defaults to 300.
        merge_stderr (bool): Send stderr into stdout. Defaults to False.

    Returns:
        list[tuple]: ``(returncode, stdout, stderr)`` by rank; stderr is
        None with ``merge_stderr``.
    """
    base = dict(
        os.environ if env is None else env,
        WORLD_SIZE=str(world_size),
        MASTER_ADDR='127.0.0.1',
        MASTER_PORT=str(free_port()),
        OMP_NUM_THREADS='1')
    processes = [
        subprocess.Popen(
            [sys.executable, *args],
            env=dict(base, RANK=str(rank), LOCAL_RANK=str(rank)),
            stdout=subprocess.PIPE,
            stderr=(subprocess.STDOUT if merge_stderr else subprocess.PIPE),
            text=True) for rank in range(world_size)
    ]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=timeout)
            results.append((process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def spawn_ranks(fn: Callable[..., None],
                args: Sequence = (),
                world_size: int = 2,
                timeout: float = 300) -> None:
    """Call ``fn(rank, *args)`` in ``world_size`` spawned processes and wait
    for all of them, for at most ``timeout`` seconds in all.

    :func:`torch.multiprocessing.spawn` waits for ever: a rank stuck in a
    collective that its peer never joins (or in the rendezvous) hangs the
    caller, a test suite included. Here a rank that raises stops the others
    and its error is raised again (as ``spawn`` does), and ranks still
    running at the deadline are killed and :class:`TimeoutError` is raised.
    No rank outlives the call either way.

    Args:
        fn (Callable): A module-level function (it is pickled by name),
            called as ``fn(rank, *args)``.
        args (Sequence): Its other arguments; they must pickle.
        world_size (int): How many ranks. Defaults to 2.
        timeout (float): The most seconds to wait for all ranks together.
            Defaults to 300.

    Raises:
        TimeoutError: Ranks still ran after ``timeout`` seconds.
        torch.multiprocessing.ProcessRaisedException: A rank raised.
        torch.multiprocessing.ProcessExitedException: A rank died (a
            signal or a non-zero exit code).
    """
    context = mp.start_processes(
        fn,
        args=tuple(args),
        nprocs=world_size,
        join=False,
        start_method='spawn')
    deadline = time.monotonic() + timeout
    try:
        # join() returns True once every rank has finished and raises as
        # soon as one has failed (after terminating the others).
        while not context.join(
                timeout=max(0., min(1., deadline - time.monotonic()))):
            if time.monotonic() >= deadline:
                running = [
                    rank for rank, process in enumerate(context.processes)
                    if process.is_alive()
                ]
                raise TimeoutError(
                    f'ranks {running} of {world_size} still ran after '
                    f'{timeout:g} s and were killed: a rank waited for a '
                    'collective or a rendezvous that another rank never '
                    'joined, or hung in its own work or teardown.')
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
            process.join()
