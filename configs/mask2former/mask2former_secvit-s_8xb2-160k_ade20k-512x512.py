# Mask2Former semantic segmentation, SecViT-S, ADE20K, 160k iterations of
# 8 GPUs x 2 images at 512x512: mmseg's Mask2Former (AdamW lr 1e-4, weight
# decay 0.05, gradient clipping 0.01, poly decay, 100 queries). Backbone
# settings as mmseg's Swin Mask2Former configs; SecViT's own Mask2Former
# setting is not public.
_base_ = [
    'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    '../_base_/models/secvit_backbones.py'
]

custom_imports = dict(
    imports=['mmdet.models', 'mmsecvit'], allow_failed_imports=False)

model = dict(
    # mmseg's Swin-T/S/B Mask2Former value.
    backbone=dict(_base_.secvit.small.backbone, drop_path_rate=0.3),
    decode_head=dict(in_channels=_base_.secvit.small.channels))

# As mmseg's Swin Mask2Former: the backbone at 0.1 x lr (mmseg's base), its
# norm layers (and SecViT's layer scales) without weight decay. SecViT has
# no position-embedding parameters (RoPE angles are buffers); query and
# level embeddings keep mmseg's decay_mult=0.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={
            key: dict(lr_mult=0.1, decay_mult=0.0)
            for key in _base_.secvit_norm_keys
        },
        norm_decay_mult=0.0))
