# Copyright (c) mmsecvit contributors. All rights reserved.
from .demo import DEMO_ADE_LABELS, DEMO_COCO_CLASSES, make_demo_data

__all__ = ['DEMO_ADE_LABELS', 'DEMO_COCO_CLASSES', 'make_demo_data']
