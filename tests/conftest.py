# Copyright (c) mmsecvit contributors. All rights reserved.
import pytest
import torch


@pytest.fixture
def fresh_dynamo():
    """Empty TorchDynamo's caches before and after the test.

    Compiled code stays attached to a function's code object for the whole
    process, so graphs that earlier tests built for, say,
    ``SecViTBlock.forward`` would count against a later test's recompile
    limit (8 by default) and change its graph counts.
    """
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()
