//! Slot-level lowering: Tensor IR → HE IR (plan instructions) through layouts and kernels.
//!
//! - [`select`]: layout selection (interleaved period by cost, KV-cache and product layouts);
//! - [`value`]: ciphertexts and views (data movement deferred until a consumer fixes a layout);
//! - [`kernels`]: matrix–vector, polynomial, reduction and conversion kernels;
//! - [`lower`]: the driver, producing a [`cachemir_ir::plan::Plan`].

pub mod builder;
pub mod dedupe;
pub mod kernels;
mod lowering;
pub mod movement;
mod ops;
pub mod select;
pub mod value;
pub mod weights;

pub use builder::{Builder, Cipher, Counts, Interface};
pub use lowering::{
    KernelRecord, LowerError, LowerOptions, Lowered, WeightSource, layer_of, lower,
};
