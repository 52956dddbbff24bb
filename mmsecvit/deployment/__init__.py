# Copyright (c) mmsecvit contributors. All rights reserved.
"""Export to deployment formats (ONNX). Imports models and engine, and is
imported by nothing in the package but the analysis tools."""
