# Copyright (c) mmsecvit contributors. All rights reserved.
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO_ROOT, 'tools', 'run_tests.sh')

pytestmark = pytest.mark.skipif(
    not osp.isfile(SCRIPT), reason='needs the checkout')

# Stands in for python: answers the script's pytest-xdist check with
# FAKE_XDIST_RC (0: installed) and prints the pytest command it is given
# and the threads it would run with.
FAKE_PYTHON = """#!/usr/bin/env bash
if [[ "$1" == -c ]]; then exit "${FAKE_XDIST_RC:-0}"; fi
echo "ARGS: $*"
echo "OMP: ${OMP_NUM_THREADS:-unset}"
"""


def _cores():
    return len(os.sched_getaffinity(0))


def _run_with_fake_python(tmp_path, args=(), **env_changes):
    fake = tmp_path / 'python'
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    env = dict(os.environ, MMSECVIT_SKIP_INSTALL='1', PYTHON=str(fake))
    for name in ('OMP_NUM_THREADS', 'MMSECVIT_TEST_WORKERS', 'FAKE_XDIST_RC'):
        env.pop(name, None)
    env.update(env_changes)
    result = subprocess.run(['bash', SCRIPT, *args],
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=60)
    lines = dict(
        line.split(': ', 1) for line in result.stdout.splitlines()
        if line.startswith(('ARGS: ', 'OMP: ')))
    return result, lines.get('ARGS', '').split(), lines.get('OMP')


def test_a_run_that_collects_no_test_fails_with_a_message():
    env = dict(os.environ, MMSECVIT_SKIP_INSTALL='1', PYTHON=sys.executable)
    result = subprocess.run(
        ['bash', SCRIPT, 'tests/test_package/test_requirements.py',
         '-k', 'no_test_has_this_name', '-p', 'no:cacheprovider'],
        env=env,
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 5, result.stdout + result.stderr
    assert 'collected no tests' in result.stderr


def test_the_suite_runs_in_processes_that_share_the_cores(tmp_path):
    result, args, threads = _run_with_fake_python(
        tmp_path, MMSECVIT_TEST_WORKERS='2')
    assert result.returncode == 0, result.stdout + result.stderr
    assert args == ['-m', 'pytest', 'tests', '-n', '2', '--dist', 'worksteal']
    assert threads == str(max(1, _cores() // 2))


def test_by_default_one_process_per_core_up_to_four(tmp_path):
    workers = min(_cores(), 4)
    result, args, _ = _run_with_fake_python(tmp_path, ['-x'])
    assert result.returncode == 0, result.stdout + result.stderr
    if workers == 1:
        assert args == ['-m', 'pytest', 'tests', '-x']
    else:
        assert args == [
            '-m', 'pytest', 'tests', '-n',
            str(workers), '--dist', 'worksteal', '-x'
        ]


def test_threads_the_user_set_are_kept(tmp_path):
    _, args, threads = _run_with_fake_python(
        tmp_path, MMSECVIT_TEST_WORKERS='2', OMP_NUM_THREADS='3')
    assert '-n' in args
    assert threads == '3'


@pytest.mark.parametrize('own', [['-n', '3'], ['-n3'], ['-nauto'],
                                 ['--numprocesses=3'], ['-p', 'no:xdist'],
                                 ['--pdb'], ['--trace']])
def test_own_process_options_take_precedence(tmp_path, own):
    result, args, threads = _run_with_fake_python(
        tmp_path, own, MMSECVIT_TEST_WORKERS='2')
    assert result.returncode == 0, result.stdout + result.stderr
    assert args == ['-m', 'pytest', 'tests', *own]
    assert threads == 'unset'


def test_one_worker_runs_one_process(tmp_path):
    _, args, threads = _run_with_fake_python(
        tmp_path, MMSECVIT_TEST_WORKERS='1')
    assert args == ['-m', 'pytest', 'tests']
    assert threads == 'unset'


def test_without_xdist_one_process_and_a_hint(tmp_path):
    result, args, threads = _run_with_fake_python(
        tmp_path, MMSECVIT_TEST_WORKERS='2', FAKE_XDIST_RC='1')
    assert result.returncode == 0, result.stdout + result.stderr
    assert args == ['-m', 'pytest', 'tests']
    assert threads == 'unset'
    assert 'pytest-xdist >= 3.2 is not installed' in result.stdout


@pytest.mark.parametrize('workers', ['0', 'two', '-1'])
def test_a_bad_worker_count_is_refused(tmp_path, workers):
    result, args, _ = _run_with_fake_python(
        tmp_path, MMSECVIT_TEST_WORKERS=workers)
    assert result.returncode == 2
    assert args == []
    assert 'MMSECVIT_TEST_WORKERS must be a positive number' in result.stderr
    assert f"got '{workers}'" in result.stderr
