"""Deployment: SavedModel for TF Serving, TFLite for devices, ONNX for onnxruntime, each verified.

Entry point: `python -m export.savedmodel --run RUN_DIR --out EXPORT_DIR`.
"""
