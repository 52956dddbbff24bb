# Copyright (c) mmsecvit contributors. All rights reserved.
"""spawn_ranks: ranks that finish, fail or hang never hang the caller.

The workers are module-level functions: the spawned ranks import this
module by name (pytest puts its folder on ``sys.path``, which spawned
processes inherit).
"""
import os
import time

import pytest
from torch.multiprocessing import ProcessRaisedException

from mmsecvit.testing import spawn_ranks


def _record_pid(rank, folder):
    with open(os.path.join(folder, f'rank{rank}.pid'), 'w') as f:
        f.write(str(os.getpid()))


def _finish(rank, folder):
    _record_pid(rank, folder)
    with open(os.path.join(folder, f'rank{rank}.done'), 'w'):
        pass


def _rank_1_hangs(rank, folder):
    _record_pid(rank, folder)
    if rank == 1:
        time.sleep(3600)


def _rank_1_raises(rank, folder):
    _record_pid(rank, folder)
    if rank == 1:
        raise ValueError('rank 1 has a bad value')
    time.sleep(3600)


def _pids(folder, world_size):
    pids = []
    for rank in range(world_size):
        with open(os.path.join(folder, f'rank{rank}.pid')) as f:
            pids.append(int(f.read()))
    return pids


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_ranks_that_finish(tmp_path):
    spawn_ranks(_finish, args=(str(tmp_path), ), world_size=3, timeout=120)
    assert sorted(os.listdir(tmp_path)) == sorted(
        f'rank{rank}.{suffix}' for rank in range(3)
        for suffix in ('done', 'pid'))


def test_a_hanging_rank_is_killed_at_the_deadline(tmp_path):
    with pytest.raises(TimeoutError, match=r'ranks \[1\] of 2 still ran'):
        spawn_ranks(_rank_1_hangs, args=(str(tmp_path), ), timeout=20)
    assert not any(map(_alive, _pids(str(tmp_path), 2)))


def test_a_failing_rank_stops_the_others(tmp_path):
    with pytest.raises(ProcessRaisedException, match='rank 1 has a bad'):
        spawn_ranks(_rank_1_raises, args=(str(tmp_path), ), timeout=120)
    assert not any(map(_alive, _pids(str(tmp_path), 2)))
