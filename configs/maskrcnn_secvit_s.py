# The entry point: Mask R-CNN with a SecViT-S backbone, FPN, 1x on COCO.
#   python tools/train.py configs/maskrcnn_secvit_s.py
# ImageNet weights are expected at checkpoints/secvit_s_in1k.pth (see
# configs/_base_/secvit_pretrained.py for other places and for training
# from scratch).
_base_ = './mask_rcnn/mask-rcnn_secvit-s_fpn_1x_coco.py'
