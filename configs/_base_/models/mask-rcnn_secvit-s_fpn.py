# Mask R-CNN FPN with a SecViT-S backbone. The T/B configs change only the
# arch, drop path rate, checkpoint and the neck's input channels.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py', '../secvit_pretrained.py'
]

custom_imports = dict(imports=['mmsecvit'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmsecvit.SecViT',
        arch='small',
        out_indices=(0, 1, 2, 3),
        # A choice: Swin-T uses 0.2 for detection, SecViT-S is of its size.
        drop_path_rate=0.2,
        # Batches of 2 images per GPU are too small for plain BN statistics
        # in the stem and downsampling layers. In a single process SyncBN
        # acts as BN; without CUDA, mmsecvit's prepare_runtime makes it BN.
        # Selective activation checkpointing: keeps attention and the
        # channel-expanding projections, recomputes norms, depth-wise convs,
        # GELU, the clustering and the output projection. At 800x1333
        # (batch 2, 2 CPU threads), in the paper's clustering that these
        # configs use, it brought training memory from 8.2 to 4.8 GiB, 0.93x
        # Swin-T's 5.2 GiB, with the same results and no measurable extra
        # time (docs/benchmark.md, "Training, 800x1333"). False: faster,
        # more memory; True: least memory, slower still.
        with_cp='selective',
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        init_cfg=dict(
            type='Pretrained',
            checkpoint={{_base_.secvit_checkpoints.small}})),
    neck=dict(in_channels=[64, 128, 256, 512]))
