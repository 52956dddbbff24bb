# Copyright (c) mmsecvit contributors. All rights reserved.
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO_ROOT, 'tools', 'run_tests.sh')


@pytest.mark.skipif(not osp.isfile(SCRIPT), reason='needs the checkout')
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
