//! Ciphertexts: (c_0, c_1[, c_2]) ∈ R_{Q_ℓ}^{2|3} in NTT form with level, scale and slot count;
//! decryption computes c_0 + c_1·s (+ c_2·s²).

use serde::{Deserialize, Serialize};

use crate::error::{CkksError, Result};
use crate::ring::poly::RnsPoly;

/// A CKKS ciphertext. Degree 1 (two polynomials) except right after a ct-ct multiplication
/// without relinearization (degree 2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ciphertext {
    pub(crate) parts: Vec<RnsPoly>,
    pub(crate) level: usize,
    pub(crate) scale: f64,
    pub(crate) slots: usize,
    pub(crate) params_id: u64,
}

impl Ciphertext {
    /// Assembles a ciphertext from NTT-form parts computed elsewhere (e.g. downloaded from a
    /// GPU): 2 or 3 polynomials of `level + 1` limbs each, all of the same ring degree.
    ///
    /// # Errors
    /// [`CkksError::InvalidInput`] for another number of parts or limbs, or mixed ring degrees.
    pub fn from_parts(
        parts: Vec<RnsPoly>,
        level: usize,
        scale: f64,
        slots: usize,
        params_id: u64,
    ) -> Result<Self> {
        if !(2..=3).contains(&parts.len()) {
            return Err(CkksError::InvalidInput(format!(
                "a ciphertext has 2 or 3 parts, not {}",
                parts.len()
            )));
        }
        let n = parts[0].n();
        if let Some(p) = parts
            .iter()
            .find(|p| p.n() != n || p.num_limbs() != level + 1)
        {
            return Err(CkksError::InvalidInput(format!(
                "a part of {} limbs at N = {} (level {level} needs {} limbs at N = {n})",
                p.num_limbs(),
                p.n(),
                level + 1
            )));
        }
        Ok(Ciphertext {
            parts,
            level,
            scale,
            slots,
            params_id,
        })
    }

    /// Level ℓ (ℓ + 1 limbs).
    pub fn level(&self) -> usize {
        self.level
    }
    /// Scale Δ of the encrypted message.
    pub fn scale(&self) -> f64 {
        self.scale
    }
    /// Overrides the scale bookkeeping (e.g. after an exact division by a known constant).
    pub fn set_scale(&mut self, scale: f64) {
        self.scale = scale;
    }
    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }
    /// Degree (number of polynomials − 1).
    pub fn degree(&self) -> usize {
        self.parts.len() - 1
    }
    /// The polynomials (NTT form).
    pub fn parts(&self) -> &[RnsPoly] {
        &self.parts
    }
    /// Size in memory, bytes.
    pub fn size_bytes(&self) -> usize {
        self.parts.iter().map(|p| p.data().len() * 8).sum()
    }
    pub(crate) fn expect_degree(&self, d: usize) -> Result<()> {
        if self.degree() != d {
            return Err(CkksError::CiphertextDegree(self.degree(), d));
        }
        Ok(())
    }
}
