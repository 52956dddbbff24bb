# ImageNet-1k weights of the SecViT backbones: the one place their paths live.
#
# The files are looked up in the folder named by the environment variable
# MMSECVIT_PRETRAINED_DIR (default: ./checkpoints, relative to where the
# tool runs). Other ways to choose the weights of a single run:
#   --cfg-options model.backbone.init_cfg.checkpoint=/path/to/secvit_s.pth
#   --cfg-options model.backbone.init_cfg=None      (train from scratch)
# tools/train.py stops before building anything when the file is missing,
# naming the path it looked for and these fixes.
secvit_checkpoints = dict(
    tiny='{{$MMSECVIT_PRETRAINED_DIR:checkpoints}}/secvit_t_in1k.pth',
    small='{{$MMSECVIT_PRETRAINED_DIR:checkpoints}}/secvit_s_in1k.pth',
    base='{{$MMSECVIT_PRETRAINED_DIR:checkpoints}}/secvit_b_in1k.pth',
)
