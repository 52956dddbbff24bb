# Semantic FPN schedule of RMT's ADE20K configs (the SecViT authors' previous
# backbone; SecViT's own Semantic FPN setting is not public): AdamW lr 1e-4,
# weight decay 1e-4, 80k iterations of 2 images per GPU, poly decay (power
# 0.9) to 1e-6, no warmup. RMT's config does not give its GPU count: 8 is
# assumed (16 images per iteration), as for the other ADE20K configs here.
_base_ = 'mmseg::_base_/schedules/schedule_80k.py'

optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4),
    # Not in RMT's config (it decays everything); kept as in all our
    # configs: no weight decay on norms, biases and layer scales.
    paramwise_cfg=dict(
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={'gamma_': dict(decay_mult=0.)}))

param_scheduler = [
    dict(
        type='PolyLR',
        eta_min=1e-6,
        power=0.9,
        begin=0,
        end=80000,
        by_epoch=False)
]

# mmseg's bases do not record the batch size the lr was tuned for;
# --auto-scale-lr needs it.
auto_scale_lr = dict(enable=False, base_batch_size=16)
