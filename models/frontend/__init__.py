"""The audio front-end: ONNX runtime graph, CPU reference, parity and benchmark."""
