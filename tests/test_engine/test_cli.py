# Copyright (c) mmsecvit contributors. All rights reserved.
"""How the tools end: a user error in one message, a bug with its
traceback (mmsecvit.engine.cli)."""
import argparse
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.registry import MODELS

from mmsecvit.engine.cli import (DEBUG_ENV, USER_ERROR_EXIT_CODE,
                                 add_arch_argument, add_batch_argument,
                                 add_debug_argument, add_launcher_arguments,
                                 add_limit_size_argument, add_threads_argument,
                                 apply_threads_argument, argument_type,
                                 check_batch_argument, export_local_rank,
                                 find_user_error, parse_device, run_tool)
from mmsecvit.testing import run_ranks
from mmsecvit.utils.errors import (ConfigKeyError, ConfigValueError,
                                   MissingFileError, MMSecViTUserError,
                                   UnsupportedEnvironmentError)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FAILING_RANKS = osp.join(osp.dirname(osp.abspath(__file__)),
                         'failing_ranks.py')


@pytest.fixture(autouse=True)
def no_debug_no_rank(monkeypatch):
    """Neither the debug switch nor a launcher's rank from the caller's
    environment; what a test sets is undone afterwards."""
    monkeypatch.setenv(DEBUG_ENV, '0')
    for name in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK'):
        monkeypatch.delenv(name, raising=False)


def raise_(error):
    raise error


def mmengine_style_wrap(error):
    """What MMEngine's registry did before 0.10 (and may do again): re-raise
    with the class that failed to build prepended."""
    try:
        raise error
    except Exception as e:
        raise type(e)(f'class `SecViT` in mmsecvit/models/backbones: {e}')


def test_user_error_is_one_message_and_exit_code_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_tool(raise_, ConfigValueError('out_indices must lie in [0, 4)'))
    assert exit_info.value.code == USER_ERROR_EXIT_CODE
    out, err = capsys.readouterr()
    assert err.strip().endswith('error: out_indices must lie in [0, 4)')
    assert len(err.strip().splitlines()) == 1
    assert 'Traceback' not in out + err


def test_a_bug_keeps_its_traceback():
    with pytest.raises(ZeroDivisionError):
        run_tool(lambda: 1 / 0)


def test_a_bug_keeps_its_traceback_in_a_real_process():
    code = ('from mmsecvit.engine.cli import run_tool\n'
            'def main():\n'
            '    return {}["typo"]\n'
            'run_tool(main)\n')
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    env.pop(DEBUG_ENV, None)
    result = subprocess.run([sys.executable, '-c', code],
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 1
    assert 'Traceback' in result.stderr
    assert "KeyError: 'typo'" in result.stderr


@pytest.mark.parametrize('value', ['1', 'true', 'yes'])
def test_debug_environment_variable_shows_the_traceback(monkeypatch, value):
    monkeypatch.setenv(DEBUG_ENV, value)
    with pytest.raises(MissingFileError):
        run_tool(raise_, MissingFileError('No image at x.jpg'))


def test_debug_option_shows_the_traceback():
    parser = argparse.ArgumentParser()
    add_debug_argument(parser)

    def main():
        assert parser.parse_args(['--debug']).debug
        raise ConfigValueError('bad value')

    with pytest.raises(ConfigValueError, match='bad value'):
        run_tool(main)
    assert not parser.parse_args([]).debug


def test_user_error_raised_through_the_registry_is_recognised(capsys):
    """A bad arch in a config fails inside MMEngine's registry."""
    import mmsecvit.models  # noqa: F401  (registers SecViT)

    with pytest.raises(SystemExit) as exit_info:
        run_tool(MODELS.build, dict(type='mmsecvit.SecViT', arch='huge'))
    assert exit_info.value.code == USER_ERROR_EXIT_CODE
    err = capsys.readouterr().err
    assert "error: Unknown SecViT arch 'huge'. Choose one of" in err
    assert 'Traceback' not in err


def test_wrapped_user_error_reports_the_original_message():
    with pytest.raises(ConfigKeyError) as info:
        mmengine_style_wrap(ConfigKeyError("Unknown SecViT arch 'huge'."))
    found = find_user_error(info.value)
    assert str(found) == "Unknown SecViT arch 'huge'."


def test_user_error_translated_with_raise_from_is_recognised():
    original = MissingFileError('Checkpoint file not found: a.pth')
    try:
        try:
            raise original
        except MissingFileError as error:
            raise RuntimeError('could not build the runner') from error
    except RuntimeError as error:
        assert find_user_error(error) is original


def test_user_error_translated_into_a_clearer_one_keeps_the_clearer():
    try:
        try:
            raise MissingFileError('Checkpoint file not found: s.pth')
        except MissingFileError as error:
            raise MissingFileError('SecViT pretrained checkpoint not found: '
                                   's.pth. Download it from ...') from error
    except MissingFileError as error:
        assert str(find_user_error(error)).startswith('SecViT pretrained')


def test_a_bug_while_handling_a_user_error_is_still_a_bug():
    try:
        try:
            raise ConfigValueError('bad value')
        except ConfigValueError:
            1 / 0
    except ZeroDivisionError as error:
        assert find_user_error(error) is None


def test_user_errors_keep_their_builtin_bases():
    from mmsecvit.engine.preflight import (DatasetNotFoundError,
                                           PretrainedNotFoundError)
    from mmsecvit.utils.errors import CheckpointMismatchError
    from mmsecvit.utils.fileio import CheckpointLoadError
    for cls, base in ((DatasetNotFoundError, FileNotFoundError),
                      (PretrainedNotFoundError, FileNotFoundError),
                      (CheckpointLoadError, RuntimeError),
                      (CheckpointMismatchError, ValueError),
                      (ConfigKeyError, KeyError)):
        assert issubclass(cls, MMSecViTUserError)
        assert issubclass(cls, base)
    # KeyError quotes its message; a user error must read as a sentence.
    assert str(ConfigKeyError('Unknown arch.')) == 'Unknown arch.'


def test_only_rank_0_prints_the_message(monkeypatch, capsys):
    monkeypatch.setenv('RANK', '1')
    with pytest.raises(SystemExit) as exit_info:
        run_tool(raise_, ConfigValueError('bad value'))
    assert exit_info.value.code == USER_ERROR_EXIT_CODE
    assert capsys.readouterr().err == ''


def test_argument_type_shows_the_message_of_a_user_error(capsys):
    def parse_size(text):
        raise ConfigValueError(f'Bad input size {text!r}; write HxW.')

    parser = argparse.ArgumentParser(prog='tool')
    parser.add_argument('--size', type=argument_type(parse_size))
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(['--size', '12x'])
    assert exit_info.value.code == 2
    assert "argument --size: Bad input size '12x'; write HxW." in \
        capsys.readouterr().err


def test_parse_device_on_machines_without_and_with_gpus(monkeypatch):
    assert parse_device('cpu') == 'cpu'
    with pytest.raises(ConfigValueError, match="Unknown device 'gpu'"):
        parse_device('gpu')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(UnsupportedEnvironmentError, match='no CUDA GPU'):
        parse_device('cuda')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    assert parse_device('cuda:1') == 'cuda:1'
    with pytest.raises(UnsupportedEnvironmentError, match='cuda:0 to cuda:1'):
        parse_device('cuda:2')


def run_two_ranks(failing_ranks: str):
    """Start two gloo ranks of ``failing_ranks.py``; return their
    (returncode, stderr) by rank."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    env.pop(DEBUG_ENV, None)
    return [(code, err) for code, _, err in run_ranks(
        [FAILING_RANKS, failing_ranks], env=env)]


def test_distributed_user_error_is_printed_once_and_every_rank_exits():
    (rc0, err0), (rc1, err1) = run_two_ranks('0,1')
    assert rc0 == rc1 == USER_ERROR_EXIT_CODE
    assert 'error: bad value on rank' in err0
    assert err1 == ''
    assert 'Traceback' not in err0 + err1


_LATE_FAILURE_SCRIPT = """
import sys, time
import torch.distributed as torch_dist
from mmsecvit.engine.cli import run_tool
from mmsecvit.utils.errors import ConfigValueError

def main():
    torch_dist.init_process_group('gloo')
    # Both ranks connected (see failing_ranks.py) before rank 0 leaves.
    torch_dist.barrier()
    rank = torch_dist.get_rank()
    time.sleep(3 * rank)  # rank 0, the store's host, is gone by then
    raise ConfigValueError(f'bad value on rank {rank}; fix it')

run_tool(main)
"""


def test_a_rank_failing_after_rank_0_left_prints_nothing():
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    env.pop(DEBUG_ENV, None)
    (rc0, _, err0), (rc1, _, err1) = run_ranks(['-c', _LATE_FAILURE_SCRIPT],
                                               env=env)
    assert rc0 == rc1 == USER_ERROR_EXIT_CODE
    assert err0.count('bad value on rank 0') == 1
    # Telling the others about the failure fails without the store's host;
    # c10d's C++ stack trace must not reach the user.
    assert err1 == ''


def test_rank_failing_alone_does_not_leave_the_others_hanging():
    """Rank 1 fails while rank 0 waits for it in a collective: rank 1 exits
    at once, which ends rank 0's wait with an error (the launcher would
    stop rank 0 itself)."""
    (rc0, err0), (rc1, err1) = run_two_ranks('1')
    assert rc1 == USER_ERROR_EXIT_CODE
    assert err1 == '', 'only rank 0 prints'
    assert rc0 != 0


def test_the_kernel_timing_tools_arguments():
    parser = argparse.ArgumentParser()
    add_threads_argument(parser)
    add_limit_size_argument(parser)
    assert vars(parser.parse_args([])) == {
        'threads': None, 'limit_size': 4096
    }
    before = torch.get_num_threads()
    try:
        # Not given: torch's own number stays.
        apply_threads_argument(parser.parse_args([]))
        assert torch.get_num_threads() == before
        apply_threads_argument(
            parser.parse_args(['--threads', '1', '--limit-size', '0']))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_arch_and_batch_arguments_of_the_analysis_tools():
    parser = argparse.ArgumentParser()
    add_arch_argument(parser, 'test')
    add_batch_argument(parser, 2, 'images per training step')
    args = parser.parse_args([])
    assert (args.arch, args.batch) == ('test', 2)
    assert 'default: test' in parser.format_help()
    check_batch_argument(args)
    with pytest.raises(ConfigValueError,
                       match='--batch must be at least 1, got 0'):
        check_batch_argument(parser.parse_args(['--batch', '0']))


@pytest.mark.parametrize('launcher, env, expected', [
    ('none', {}, '0'),
    ('pytorch', {'LOCAL_RANK': '3'}, '3'),
    # mpirun: MMEngine sets the device from Open MPI's local rank, not
    # LOCAL_RANK, which DDP's device_ids then come from.
    ('mpi', {'OMPI_COMM_WORLD_LOCAL_RANK': '5'}, '5'),
    ('mpi', {'OMPI_COMM_WORLD_LOCAL_RANK': '5', 'LOCAL_RANK': '2'}, '2'),
    ('mpi', {}, '1'),  # not Open MPI: the command line's
])
def test_local_rank_follows_the_launcher(monkeypatch, launcher, env,
                                         expected):
    for name in ('LOCAL_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK'):
        # setenv first: monkeypatch then restores the variable's absence
        # too, after export_local_rank set it.
        monkeypatch.setenv(name, '')
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    add_launcher_arguments(parser)
    argv = ['--launcher', launcher] + (['--local-rank', '1']
                                       if launcher == 'mpi' else [])
    export_local_rank(parser.parse_args(argv))
    assert os.environ['LOCAL_RANK'] == expected
