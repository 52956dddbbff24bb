# Segmentation schedule of SecViT with UperNet, as the paper (Swin/RMT
# practice): AdamW lr 6e-5, weight decay 0.01, 160k iterations of 16 images
# (8 GPUs x 2), 1500 iterations of linear warmup, then poly decay (power 1).
_base_ = 'mmseg::_base_/schedules/schedule_160k.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01),
    # No weight decay on norms, biases and layer scales (gamma_1/2 are
    # shaped (1, C, 1, 1): flat_decay_mult would miss them). The RoPE
    # angles are buffers, never optimised.
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={'gamma_': dict(decay_mult=0.)}))

param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(
        type='PolyLR',
        eta_min=0.0,
        power=1.0,
        begin=1500,
        end=160000,
        by_epoch=False)
]

# mmseg's bases do not record the batch size the lr was tuned for;
# --auto-scale-lr needs it.
auto_scale_lr = dict(enable=False, base_batch_size=16)
