# Copyright (c) mmsecvit contributors. All rights reserved.
"""Export to deployment formats: :mod:`.onnx_export` (docs/deployment.md)."""
