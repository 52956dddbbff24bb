# Semantic FPN, SecViT-S, 80k iterations on ADE20K, 512x512 crops
# (8 GPUs x 2 images), with RMT's protocol (see the schedule).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py', '../_base_/models/secvit_backbones.py',
    'mmseg::_base_/datasets/ade20k.py',
    '../_base_/schedules/secvit_adamw_80k.py',
    'mmseg::_base_/default_runtime.py'
]

custom_imports = dict(imports=['mmsecvit'], allow_failed_imports=False)

crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    # mmseg's FPN base names ResNet weights here, which mmseg would hand to
    # the backbone.
    pretrained=None,
    backbone=dict(
        _base_.secvit.small.backbone,
        # RMT's FPN configs keep each backbone's ImageNet rate: None is the
        # arch's (0.1 / 0.15 / 0.4 for T / S / B).
        drop_path_rate=None),
    neck=dict(in_channels=_base_.secvit.small.channels),
    decode_head=dict(num_classes=150))

train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
