# Copyright (c) mmsecvit contributors. All rights reserved.
from .version import __version__, version_info

from . import models  # noqa: F401,E402  (registers the backbone)

__all__ = ['__version__', 'version_info']
