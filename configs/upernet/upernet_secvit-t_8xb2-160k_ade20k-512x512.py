_base_ = './upernet_secvit-s_8xb2-160k_ade20k-512x512.py'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.2,
        init_cfg=dict(checkpoint={{_base_.secvit_checkpoints.tiny}})))
