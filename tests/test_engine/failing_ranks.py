# Copyright (c) mmsecvit contributors. All rights reserved.
"""A two-rank gloo job for test_cli.py: once every rank has joined the
process group, the ranks named on the command line (e.g. ``0,1``) stop on
a user error, the others wait in a barrier.

The first barrier makes sure of the "once": gloo connects the ranks to each
other inside ``init_process_group``, and a rank that returned from it and
left at once could reset the connection another rank was still opening
there (a ``DistNetworkError`` on that rank, about 1 run in 25 on a loaded
2-core machine). That is gloo's handshake, not the exit these tests are
about.

Run by the tests with RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set.
"""
import sys

import torch.distributed as torch_dist

from mmsecvit.engine.cli import run_tool
from mmsecvit.utils.errors import ConfigValueError


def main(failing_ranks: str) -> None:
    torch_dist.init_process_group('gloo')
    torch_dist.barrier()
    rank = torch_dist.get_rank()
    if str(rank) in failing_ranks.split(','):
        raise ConfigValueError(f'bad value on rank {rank}; fix it')
    torch_dist.barrier()


if __name__ == '__main__':
    run_tool(main, sys.argv[1])
