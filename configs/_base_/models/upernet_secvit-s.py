# UperNet with a SecViT-S backbone and an auxiliary FCN head on stage 3.
_base_ = ['mmseg::_base_/models/upernet_swin.py', '../secvit_pretrained.py']

custom_imports = dict(imports=['mmsecvit'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmsecvit.SecViT',
        arch='small',
        out_indices=(0, 1, 2, 3),
        # A choice: mmseg's Swin-T/S/B UperNet configs all use 0.3.
        drop_path_rate=0.3,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(
            type='Pretrained',
            checkpoint={{_base_.secvit_checkpoints.small}})),
    decode_head=dict(in_channels=[64, 128, 256, 512], num_classes=150),
    auxiliary_head=dict(in_channels=256, in_index=2, num_classes=150))
