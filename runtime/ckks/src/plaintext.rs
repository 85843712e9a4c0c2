//! Plaintexts: an encoded message polynomial (NTT form) with its level, scale and slot count.

use serde::{Deserialize, Serialize};

use crate::ring::poly::RnsPoly;

/// An encoded message m(X) ∈ R_{Q_ℓ} in NTT form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plaintext {
    pub(crate) poly: RnsPoly,
    pub(crate) level: usize,
    pub(crate) scale: f64,
    pub(crate) slots: usize,
    pub(crate) params_id: u64,
}

impl Plaintext {
    /// Level ℓ (ℓ + 1 limbs).
    pub fn level(&self) -> usize {
        self.level
    }
    /// Scale Δ (the message is m ≈ Δ·z).
    pub fn scale(&self) -> f64 {
        self.scale
    }
    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }
    /// The polynomial (NTT form).
    pub fn poly(&self) -> &RnsPoly {
        &self.poly
    }
}
