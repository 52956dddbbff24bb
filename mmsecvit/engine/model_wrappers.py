# Copyright (c) mmsecvit contributors. All rights reserved.
"""A DDP wrapper that also runs on CPU-only torch (gloo backend)."""
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel, revert_sync_batchnorm

from mmsecvit.registry import MODEL_WRAPPERS


def _on_cuda(module) -> bool:
    return any(p.is_cuda for p in module.parameters())


@MODEL_WRAPPERS.register_module()
class DeviceAwareDistributedDataParallel(MMDistributedDataParallel):
    """:class:`MMDistributedDataParallel` for CUDA and CPU modules.

    MMEngine's Runner passes ``device_ids=[LOCAL_RANK]`` to every DDP wrapper,
    which DDP rejects for a module on the CPU. For CPU modules this wrapper
    drops ``device_ids`` and ``output_device`` and reverts SyncBN layers to
    BN (SyncBN only runs on CUDA); CUDA modules are wrapped exactly like
    :class:`MMDistributedDataParallel` does.

    Args:
        module (nn.Module): The model to wrap.
        device_ids (list[int], optional): CUDA devices; ignored on CPU.
        **kwargs: Other arguments of :class:`MMDistributedDataParallel`,
            e.g. ``find_unused_parameters`` or ``broadcast_buffers``.
    """

    def __init__(self, module, device_ids=None, **kwargs):
        if not _on_cuda(module):
            if device_ids is not None or 'output_device' in kwargs:
                print_log(
                    'The model is on the CPU: dropping device_ids '
                    f'{device_ids} from DistributedDataParallel.',
                    logger='current')
            device_ids = None
            kwargs.pop('output_device', None)
            module = revert_sync_batchnorm(module)
        super().__init__(module=module, device_ids=device_ids, **kwargs)
