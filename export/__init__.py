"""Deployment: SavedModel for TF Serving, TFLite for devices, ONNX for onnxruntime, each verified.

Entry point: `python -m export.savedmodel --run RUN_DIR --out EXPORT_DIR`.

Python API (README "Python API"):

    export_model(model, class_names, out, eval_data=...) -> report   export, verify, publish a classifier
    ExportFailed                                                     an artifact failed verification
    FORMATS                                                          savedmodel, tflite, onnx
"""

from pipelines.lazy import lazy_module

__all__ = ["export_model", "ExportFailed", "FORMATS"]

__getattr__, __dir__ = lazy_module(__name__, {
    "export_model": "export.savedmodel", "ExportFailed": "export.savedmodel", "FORMATS": "export.savedmodel"})
