# Cascade Mask R-CNN, SecViT-S, FPN, 1x schedule on COCO (8 GPUs x 2
# images): the Mask R-CNN 1x schedule (AdamW lr 1e-4, weight decay 0.05,
# steps after epochs 8 and 11). SecViT's own Cascade setting is not public.
_base_ = [
    '../_base_/models/cascade-mask-rcnn_secvit-s_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/secvit_adamw_1x.py',
    'mmdet::_base_/default_runtime.py'
]
