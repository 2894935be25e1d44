"""Latency measurement of ONNX graphs: with ONNX Runtime, and with TVM locally or on a board over RPC."""
