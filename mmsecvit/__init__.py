# Copyright (c) mmsecvit contributors. All rights reserved.
from .utils.version_check import check_versions
from .version import __version__, version_info

# Before anything below registers with mmcv/mmdet/mmseg: an unsupported
# version then fails here with a message that says how to fix it.
check_versions()

from . import utils  # noqa: F401,E402  (must come first: checkpoint safety)
from . import engine, models  # noqa: F401,E402  (registers modules)

__all__ = ['__version__', 'version_info']
