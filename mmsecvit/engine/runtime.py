# Copyright (c) mmsecvit contributors. All rights reserved.
"""Runtime preparation shared by the tools (filled in by the distributed
work; until then a pass-through)."""


def prepare_runtime(cfg, launcher: str = 'none'):
    """Adapt ``cfg`` to the machine before the Runner is built.

    Args:
        cfg (mmengine.Config): The full config.
        launcher (str): The launcher given on the command line.

    Returns:
        mmengine.Config: The same config, possibly modified.
    """
    return cfg
