# Copyright (c) mmsecvit contributors. All rights reserved.
from .secvit import SecViT

__all__ = ['SecViT']
