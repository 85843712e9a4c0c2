//! Slot-level lowering: Tensor IR → HE IR (plan instructions) through layouts and kernels.

pub mod builder;
pub mod kernels;

pub use builder::{Builder, Cipher, Counts, Interface};
