//! Homomorphic operations: arithmetic, rescale and level management, key switching,
//! relinearization, rotations and conjugation (single and hoisted), and the BSGS linear
//! transform.

mod arith;
pub mod keyswitch;
pub mod linear_transform;
mod rotate;

pub use linear_transform::{EncodedLinearTransform, LinearTransform};
pub use rotate::HoistedCiphertext;

use crate::context::CkksContext;

/// Evaluates homomorphic operations under one context. Stateless apart from the context; every
/// method checks parameter ids, levels, scales and keys and returns typed errors.
#[derive(Debug, Clone)]
pub struct Evaluator {
    pub(crate) ctx: CkksContext,
}

impl Evaluator {
    /// An evaluator for `ctx`.
    pub fn new(ctx: &CkksContext) -> Self {
        Evaluator { ctx: ctx.clone() }
    }

    /// The context.
    pub fn context(&self) -> &CkksContext {
        &self.ctx
    }
}
