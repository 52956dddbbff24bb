# Mask R-CNN, SecViT-S, FPN, 1x schedule on COCO (8 GPUs x 2 images).
_base_ = [
    '../_base_/models/mask-rcnn_secvit-s_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/secvit_adamw_1x.py',
    'mmdet::_base_/default_runtime.py'
]
