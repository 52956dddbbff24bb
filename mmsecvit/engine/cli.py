# Copyright (c) mmsecvit contributors. All rights reserved.
"""What every mmsecvit tool shares on the command line: its common
arguments, and how it ends when something goes wrong.

Every tool runs its ``main`` through :func:`run_tool`:

- an error the user caused (any :class:`MMSecViTUserError`, also when a
  library re-raised it wrapped in another exception) prints one message,
  ``<tool>: error: <what is wrong and how to fix it>``, to stderr and exits
  with code 2, without a traceback;
- any other exception is a bug and keeps its traceback;
- ``--debug`` (:func:`add_debug_argument`) or the environment variable
  ``MMSECVIT_DEBUG=1`` shows the traceback of user errors too;
- under a distributed launch only rank 0 prints the message, and every rank
  that fails exits at once with code 2, without waiting for the others: the
  launcher (``torch.distributed.run``, ``srun --kill-on-bad-exit``,
  ``mpirun``) then stops the ranks still waiting in a collective.
"""
import argparse
import functools
import os
import os.path as osp
import sys
from typing import Any, Callable, Optional

import torch
import torch.distributed as torch_dist
from mmengine.config import DictAction

from mmsecvit.utils.errors import (ConfigValueError, MMSecViTUserError,
                                   UnsupportedEnvironmentError)
from .runtime import announce_failure

#: Set to 1 (or pass ``--debug``) to see the traceback of user errors.
DEBUG_ENV = 'MMSECVIT_DEBUG'
#: The exit code of a tool stopped by a user error (argparse's, too).
USER_ERROR_EXIT_CODE = 2
# Where the launchers put the global rank before a process group exists.
_RANK_ENVS = ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK')
_FALSE_WORDS = ('', '0', 'false', 'no', 'off')


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


#: Where Open MPI's ``mpirun`` puts a process's rank on its node; MMEngine's
#: MPI launcher sets the CUDA device from it but not ``LOCAL_RANK``.
MPI_LOCAL_RANK_ENV = 'OMPI_COMM_WORLD_LOCAL_RANK'


def export_local_rank(args) -> None:
    """Make the local rank visible to MMEngine, which reads ``LOCAL_RANK``
    from the environment (e.g. for the device of DDP), where the launcher
    has not set it: Open MPI's local rank under ``--launcher mpi``, else the
    one given on the command line.

    Under ``mpirun`` every process would otherwise get ``LOCAL_RANK=0``:
    each rank's DDP would be built for GPU 0 while MMEngine put its model on
    the rank's own GPU.
    """
    if 'LOCAL_RANK' in os.environ:
        return
    local_rank = args.local_rank
    if getattr(args, 'launcher', None) == 'mpi' and \
            MPI_LOCAL_RANK_ENV in os.environ:
        local_rank = int(os.environ[MPI_LOCAL_RANK_ENV])
    os.environ['LOCAL_RANK'] = str(local_rank)


class _DebugAction(argparse.Action):
    """``--debug``: also exported as ``MMSECVIT_DEBUG=1``, so that
    :func:`run_tool`, which wraps the argument parsing, and the processes
    the tool starts see it."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(
            option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, True)
        os.environ[DEBUG_ENV] = '1'


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug``: show the full traceback of user errors too."""
    parser.add_argument(
        '--debug',
        action=_DebugAction,
        help='show the full traceback when the tool stops on a user error '
        f'(same as the environment variable {DEBUG_ENV}=1)')


def add_device_arguments(parser: argparse.ArgumentParser,
                         dtype: bool = True) -> None:
    """Add ``--device`` (checked by :func:`parse_device`, default 'cpu')
    and, with ``dtype``, ``--dtype`` of the timed tensors (float32, float64,
    bfloat16 or float16; default float32) of the kernel benchmarks."""
    parser.add_argument(
        '--device', type=argument_type(parse_device), default='cpu')
    if dtype:
        parser.add_argument(
            '--dtype',
            default='float32',
            choices=['float32', 'float64', 'bfloat16', 'float16'])


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--threads`` (default None: torch's own number); apply it
    with :func:`apply_threads_argument`."""
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch.set_num_threads for the run (default: torch\'s)')


def apply_threads_argument(args: argparse.Namespace) -> None:
    """``torch.set_num_threads(args.threads)`` where it was given."""
    if args.threads:
        torch.set_num_threads(args.threads)


def add_arch_argument(parser: argparse.ArgumentParser,
                      default: str = 's') -> None:
    """Add ``--arch`` of the analysis tools: a SecViT arch or ``'test'``,
    read with :func:`~mmsecvit.analysis.benchmark.parse_arch_or_test`."""
    parser.add_argument(
        '--arch',
        default=default,
        help="SecViT arch (t s b l, a dict) or 'test' for the small test "
        f'arch (default: {default})')


def add_batch_argument(parser: argparse.ArgumentParser,
                       default: int = 1,
                       help: str = 'images per batch') -> None:
    """Add ``--batch``; check it with :func:`check_batch_argument`."""
    parser.add_argument('--batch', type=int, default=default, help=help)


def check_batch_argument(args: argparse.Namespace) -> None:
    """Refuse a ``--batch`` below 1 with a :class:`ConfigValueError`."""
    if args.batch < 1:
        raise ConfigValueError(
            f'--batch must be at least 1, got {args.batch}.')


def add_limit_size_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--limit-size``: the side of the square fp32 matrix product
    that measures the machine's arithmetic limit (0: none)."""
    parser.add_argument(
        '--limit-size',
        type=int,
        default=4096,
        help='side of the fp32 matrix product that measures the limit '
        '(0: no limit)')


def argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` made fit for argparse's ``type=``, keeping its message.

    argparse reports a ``ValueError`` raised by ``type=`` as ``invalid
    <name> value``, dropping the message; a user error becomes an
    ``ArgumentTypeError`` so that argparse shows what it says.
    """

    @functools.wraps(parse)
    def parse_argument(text: str) -> Any:
        try:
            return parse(text)
        except MMSecViTUserError as error:
            raise argparse.ArgumentTypeError(str(error)) from error

    return parse_argument


def parse_device(text: str) -> str:
    """Check a ``--device`` value against this machine.

    Args:
        text (str): A torch device, e.g. 'cpu', 'cuda', 'cuda:1'.

    Returns:
        str: ``text``.

    Raises:
        ConfigValueError: If torch does not know the device.
        UnsupportedEnvironmentError: For a CUDA device this machine lacks.
    """
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise ConfigValueError(
            f'Unknown device {text!r}; use e.g. cpu, cuda or cuda:0.') \
            from error
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            raise UnsupportedEnvironmentError(
                f'Device {text!r} asked for, but this torch '
                f'({torch.__version__}) finds no CUDA GPU. Use --device cpu, '
                'or install a CUDA build of torch on a machine with a GPU.')
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UnsupportedEnvironmentError(
                f'Device {text!r} asked for, but this machine has {count} '
                f'CUDA GPU(s): use cuda:0 to cuda:{count - 1}.')
    return text


def debug_enabled() -> bool:
    """Whether ``--debug`` or ``MMSECVIT_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, '').strip().lower() not in _FALSE_WORDS


def _repeats(outer: BaseException, inner: Optional[BaseException]) -> bool:
    """Whether ``outer`` only adds context to ``inner``'s message, as
    ``type(e)(f'...: {e}')`` does."""
    return inner is not None and bool(str(inner)) and str(inner) in str(outer)


def find_user_error(error: BaseException) -> Optional[MMSecViTUserError]:
    """The user error that ``error`` is or re-raises, or None for a bug.

    ``error`` counts as a user error if it is one, if it was raised ``from``
    one (a deliberate translation), or if it repeats the message of the
    exception it was raised while handling (a wrapper adding context). An
    unrelated exception raised while handling a user error is a bug of its
    own. Of a user error that a wrapper repeats, the original is returned:
    its message has no prefix.

    Args:
        error (BaseException): The exception that stopped the tool.

    Returns:
        MMSecViTUserError | None: The error to report, or None.
    """
    found = None
    seen = set()
    current = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MMSecViTUserError):
            found = current
        inner = current.__cause__ or (None if current.__suppress_context__
                                      else current.__context__)
        translated = found is None and current.__cause__ is not None
        if not (translated or _repeats(current, inner)):
            break
        current = inner
    return found


def current_rank() -> int:
    """This process's global rank: from the process group, or from the
    launcher's environment before one exists; 0 when not distributed."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank()
    for name in _RANK_ENVS:
        value = os.environ.get(name, '')
        if value.isdigit():
            return int(value)
    return 0


def format_user_error(error: MMSecViTUserError,
                      prog: Optional[str] = None) -> str:
    """``<prog>: error: <message>``, the way argparse reports bad usage."""
    prog = prog or osp.basename(sys.argv[0] or 'mmsecvit')
    return f'{prog}: error: {error}'


def run_tool(main: Callable[..., Any], *args, **kwargs) -> Any:
    """Run a tool's ``main`` and end a user error with one clear message.

    Args:
        main (callable): The tool's main function (it parses the command
            line itself).
        *args, **kwargs: Passed to ``main``.

    Returns:
        Whatever ``main`` returns.

    Raises:
        SystemExit: Code 2 after a user error (see the module docstring).
        Exception: Anything else ``main`` raises, with its traceback; user
            errors too when :func:`debug_enabled`.
    """
    try:
        return main(*args, **kwargs)
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None or debug_enabled():
            raise
    exit_on_user_error(user_error)


def exit_on_user_error(error: MMSecViTUserError) -> None:
    """Print ``error`` once (rank 0) and end the process with code 2.

    A rank of a distributed run leaves with ``os._exit``: tearing its
    process group down or finalising the interpreter could wait for ranks
    that are blocked in a collective and will never answer. Exiting closes
    its connections, which the launcher and the other ranks notice.
    """
    if current_rank() == 0:
        print(format_user_error(error), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    if torch_dist.is_available() and torch_dist.is_initialized():
        # os._exit skips the exit handler that would announce it.
        announce_failure()
        os._exit(USER_ERROR_EXIT_CODE)
    sys.exit(USER_ERROR_EXIT_CODE)
