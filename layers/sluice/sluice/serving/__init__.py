"""The prediction API: FastAPI app, model store and request validation.

``sluice.serving.app`` builds the FastAPI application (``create_app`` and the module-level ``app``
that ``functions/api/app.py`` wraps with Mangum); ``sluice.serving.models`` holds the
``ModelStore`` that loads champion ONNX models from the registry and predicts with onnxruntime.
Importing this package is cheap: FastAPI and onnxruntime load only with those modules.
"""
