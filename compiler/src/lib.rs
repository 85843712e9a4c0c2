//! Cachemir compiler.
