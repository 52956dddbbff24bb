# Mask R-CNN, SecViT-S, FPN, 3x schedule with multi-scale training on COCO
# (8 GPUs x 2 images). The augmentation (multi-scale resize 480-800, or a
# random crop between two resizes) is that of mmdet's Swin ms-crop-3x config.
_base_ = [
    '../_base_/models/mask-rcnn_secvit-s_fpn.py',
    '../_base_/datasets/coco_instance_ms-crop.py',
    '../_base_/schedules/secvit_adamw_3x.py',
    'mmdet::_base_/default_runtime.py'
]
