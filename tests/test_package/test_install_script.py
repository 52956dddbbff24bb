# Copyright (c) mmsecvit contributors. All rights reserved.
"""tools/install.sh, run with a python whose torch does not import."""
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO_ROOT, 'tools', 'install.sh')

pytestmark = pytest.mark.skipif(
    not osp.isfile(SCRIPT), reason='needs the checkout')

# This test's python, except that ``import torch`` in a ``-c`` program
# fails as a broken install would.
BROKEN_TORCH_PYTHON = f"""#!/usr/bin/env bash
if [[ "$1" == -c && "$2" == *"import torch"* ]]; then
    echo "ImportError: libtorch_cpu.so: cannot open shared object" >&2
    exit 1
fi
exec {sys.executable} "$@"
"""


def test_a_torch_that_does_not_import_is_reported(tmp_path):
    """Before, ``read`` at the end of its input ended the script under
    ``set -e`` with exit code 1 and no message."""
    fake = tmp_path / 'python'
    fake.write_text(BROKEN_TORCH_PYTHON)
    fake.chmod(0o755)
    result = subprocess.run(['bash', SCRIPT],
                            env=dict(os.environ, PYTHON=str(fake)),
                            capture_output=True,
                            text=True,
                            timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'torch: already installed' in result.stdout
    assert 'ERROR: torch is installed but does not import' in result.stderr
