"""Export: ExecuTorch `.pte` (XNNPACK) and ONNX, with runners over their runtimes."""
