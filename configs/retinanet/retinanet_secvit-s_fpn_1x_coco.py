# RetinaNet, SecViT-S, FPN, 1x schedule on COCO (8 GPUs x 2 images).
_base_ = [
    '../_base_/models/retinanet_secvit-s_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    '../_base_/schedules/secvit_adamw_1x.py',
    'mmdet::_base_/default_runtime.py'
]

# RetinaNet's weight decay in backbone comparisons: mmdet's PVT RetinaNet
# configs and the authors' RMT RetinaNet configs use 1e-4 (Mask R-CNN 0.05).
optim_wrapper = dict(optimizer=dict(weight_decay=1e-4))
