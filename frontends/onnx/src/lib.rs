//! Cachemir ONNX importer.
