# Copyright (c) mmsecvit contributors. All rights reserved.
from .version import __version__, version_info

from . import utils  # noqa: F401,E402  (must come first: checkpoint safety)
from . import engine, models  # noqa: F401,E402  (registers modules)

__all__ = ['__version__', 'version_info']
