//! Errors of the CUDA backend.

/// A failure of the CUDA backend.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CudaError {
    /// No usable GPU here: the crate was built without the `cuda` feature, the CUDA driver or
    /// NVRTC library is missing, there is no device, or the kernels do not compile for it.
    /// Callers fall back to the CPU or skip (tests print "no CUDA device: skipped").
    #[error("CUDA unavailable: {0}")]
    Unavailable(String),
    /// A driver call failed (out of device memory, a failed launch, a lost device).
    #[error("CUDA driver: {0}")]
    Driver(String),
    /// The host-side tables cannot be built for these parameters (a prime without the NTT).
    #[error("CUDA tables: {0}")]
    Tables(String),
    /// Operands that cannot be combined (levels, limbs, parameters) or input of the wrong shape.
    #[error("{0}")]
    Mismatch(String),
    /// A CKKS library error on the host side (encoding, bootstrapping fallback, assembly).
    #[error(transparent)]
    Ckks(#[from] cachemir_ckks::CkksError),
}
