# Copyright (c) mmsecvit contributors. All rights reserved.
"""Command-line arguments that every mmsecvit tool shares."""
import os

from mmengine.config import DictAction


def add_cfg_options_argument(parser) -> None:
    """Add ``--cfg-options`` (key=value overrides merged into the config),
    as every OpenMMLab tool has it."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override some settings in the used config, the key-value pair '
        'in xxx=yyy format will be merged into config file. If the value to '
        'be overwritten is a list, it should be like key="[a,b]" or key=a,b '
        'It also allows nested list/tuple values, e.g. key="[(a,b),(c,d)]" '
        'Note that the quotation marks are necessary and that no white space '
        'is allowed.')


def add_launcher_arguments(parser) -> None:
    """Add ``--launcher`` and the local rank that launchers pass, under both
    spellings: ``--local-rank`` (torch >= 2.0) and ``--local_rank``."""
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def export_local_rank(args) -> None:
    """Make the local rank given on the command line visible to MMEngine,
    which reads ``LOCAL_RANK`` from the environment."""
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
