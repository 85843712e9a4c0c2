//! Cachemir Tensor IR.
