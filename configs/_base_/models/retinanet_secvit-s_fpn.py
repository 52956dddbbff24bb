# RetinaNet FPN with a SecViT-S backbone. As in mmdet's Swin RetinaNet, the
# stride-4 map is not used: the FPN starts at stride 8 and adds two levels.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py', '../secvit_pretrained.py'
]

custom_imports = dict(imports=['mmsecvit'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmsecvit.SecViT',
        arch='small',
        # Only the maps the neck consumes, or their output norms would be
        # parameters without gradients.
        out_indices=(1, 2, 3),
        drop_path_rate=0.2,
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
    neck=dict(in_channels=[128, 256, 512], start_level=0, num_outs=5))
