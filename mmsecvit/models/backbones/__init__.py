# Copyright (c) mmsecvit contributors. All rights reserved.
from .secvit import SecViT, infer_arch, parse_arch

__all__ = ['SecViT', 'infer_arch', 'parse_arch']
