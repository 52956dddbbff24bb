# Copyright (c) mmsecvit contributors. All rights reserved.
"""tools/run_demo.sh (README command 1) hands the data and work dirs it
was given to the data generator and to training, with a stand-in python
that records its calls."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO_ROOT, 'tools', 'run_demo.sh')

pytestmark = pytest.mark.skipif(
    not osp.isfile(SCRIPT), reason='needs the checkout')

RECORDING_PYTHON = f"""#!{sys.executable}
import json, os, sys
with open(os.environ['CALLS'], 'a') as f:
    f.write(json.dumps(dict(
        argv=sys.argv[1:], cwd=os.getcwd(),
        data=os.environ.get('MMSECVIT_DEMO_DATA'))) + '\\n')
"""


def _run(tmp_path, cwd, **env):
    fake = tmp_path / 'python'
    fake.write_text(RECORDING_PYTHON)
    fake.chmod(0o755)
    calls = tmp_path / 'calls.jsonl'
    result = subprocess.run(['bash', SCRIPT],
                            cwd=str(cwd),
                            env=dict(
                                os.environ,
                                PYTHON=str(fake),
                                CALLS=str(calls),
                                MMSECVIT_SKIP_INSTALL='1',
                                **env),
                            capture_output=True,
                            text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in calls.read_text().splitlines()]


@pytest.mark.parametrize('data', ['', 'my_data'])
def test_data_and_work_dir_reach_the_generator_and_training(tmp_path, data):
    """An empty MMSECVIT_DEMO_DATA took the default in the script but
    stopped the configs with mmengine's KeyError; a relative one was taken
    from the repository instead of from where the script was started."""
    calls = _run(
        tmp_path,
        cwd=tmp_path,
        MMSECVIT_DEMO_DATA=data,
        MMSECVIT_DEMO_WORK_DIR='runs/demo')
    expected = str(tmp_path / data) if data else osp.join(
        REPO_ROOT, 'data', 'demo')
    *generate, train = calls
    # (The default data dir may hold the data already: then none is made.)
    for call in generate:
        assert call['argv'][:3] == [
            'tools/misc/make_demo_data.py', '--out', expected
        ]
    assert generate or not data
    assert train['argv'][0] == 'tools/train.py'
    assert train['argv'][-2:] == ['--work-dir', str(tmp_path / 'runs/demo')]
    assert train['data'] == expected and train['cwd'] == REPO_ROOT
