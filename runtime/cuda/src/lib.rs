//! # cachemir-cuda
//!
//! The `cuda` backend: RNS-CKKS on an NVIDIA GPU with ciphertexts and keys resident in device
//! memory, kernels written as `.cu` files (`src/kernels/`) compiled at run time with NVRTC, and
//! the driver loaded dynamically through `cudarc`, so the crate builds and its tests pass on
//! machines without CUDA.
//!
//! - Always built (host side, unit-tested everywhere): [`twiddles`] (Barrett constants and NTT
//!   twiddles from the CPU's own primes and roots), [`geometry`] (launch shapes and a host model
//!   of the NTT kernels' schedule, checked bit for bit against `cachemir-ckks`), [`conversion`]
//!   (ModUp/ModDown constants and the digit partition of hybrid key switching), [`CudaError`].
//! - With the cargo feature `cuda`: [`device`] (probing, NVRTC compilation, launches),
//!   [`poly`] (device polynomials, upload and download), [`evaluator`] (the CKKS operations on
//!   the device: arithmetic, tensor + relinearization, rescale, key switching with hoisting,
//!   rotations, level-down) and [`backend`] (`CudaBackend`, the VM's
//!   [`Backend`](cachemir_vm::Backend)).
//!
//! Results are bit-identical to `cachemir-ckks`'s: the kernels compute the same residues
//! (exact modular arithmetic, the same NTT roots and output order, the same floating-point
//! rounding in the HPS correction of basis conversion). Bootstrapping runs on the CPU
//! (`cachemir-ckks`'s bootstrapper; the ciphertext is downloaded and uploaded around it): see
//! `README.md` for what a device bootstrap still needs.

pub mod conversion;
pub mod error;
pub mod geometry;
pub mod twiddles;

#[cfg(feature = "cuda")]
pub mod backend;
#[cfg(feature = "cuda")]
pub mod device;
#[cfg(feature = "cuda")]
pub mod evaluator;
#[cfg(feature = "cuda")]
mod kernels;
#[cfg(feature = "cuda")]
pub mod poly;

pub use error::CudaError;

#[cfg(feature = "cuda")]
pub use backend::{CudaBackend, CudaCiphertext};
#[cfg(feature = "cuda")]
pub use device::CudaDevice;

/// Whether this build can drive a GPU at all (the `cuda` feature); a device must still be
/// probed ([`CudaDevice::new`] with the feature).
pub const fn built_with_cuda() -> bool {
    cfg!(feature = "cuda")
}
