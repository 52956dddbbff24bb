# Semantic FPN SecViT-S on the synthetic ADE20K-format data of
# tools/misc/make_demo_data.py (150 classes, reduce_zero_label as ADE20K):
# a run of a few minutes on one CPU, from scratch, with the real mIoU code.
_base_ = [
    '../sem_fpn/fpn_secvit-s_8xb2-80k_ade20k-512x512.py',
    '../_base_/datasets/demo_ade.py', '../_base_/schedules/demo_100iter.py'
]

# The demo data and schedule; _base_.pop keeps the demo_ names out.
data_root = _base_.pop('demo_data_root')
crop_size = _base_.pop('demo_crop_size')
train_pipeline = _base_.pop('demo_train_pipeline')
test_pipeline = _base_.pop('demo_test_pipeline')
train_dataloader = _base_.pop('demo_train_dataloader')
val_dataloader = _base_.pop('demo_val_dataloader')
test_dataloader = val_dataloader

max_iters = _base_.pop('demo_max_iters')
train_cfg = _base_.pop('demo_train_cfg')
optim_wrapper = _base_.pop('demo_optim_wrapper')
param_scheduler = _base_.pop('demo_param_scheduler')
auto_scale_lr = _base_.pop('demo_auto_scale_lr')
default_hooks = _base_.pop('demo_default_hooks')

norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(drop_path_rate=0.1, norm_cfg=norm_cfg, init_cfg=None),
    decode_head=dict(norm_cfg=norm_cfg))
