//! The 128-bit security check: the largest admissible log2(QP) per ring degree, from the
//! Homomorphic Encryption Standard (Albrecht et al., 2018, Table 1, classical, ternary secret,
//! σ ≈ 3.2) and its N = 2^16, 2^17 extension as tabulated by OpenFHE (`HEStd_128_classic`).

use super::{CkksParameters, SecretDistribution};
use crate::error::{CkksError, Result};

/// Largest log2(QP) (bits) for 128-bit classical security with a uniform ternary secret, indexed by
/// log2 N − 10 (N = 2^10 … 2^17).
pub const TERNARY_128: [u32; 8] = [27, 54, 109, 218, 438, 881, 1747, 3523];

/// Smallest Hamming weight admitted for sparse ternary secrets.
pub const MIN_SPARSE_HAMMING_WEIGHT: usize = 192;

/// The 128-bit bound in bits for `log_n` and a secret distribution, or an error when the table
/// does not cover the case. Sparse ternary secrets (h ≥ 192) get 7/8 of the ternary bound, the
/// margin of Lattigo's h = 192 sets (log QP 1546 at N = 2^16 against 1767 for dense secrets).
pub fn max_log_qp(log_n: u32, secret: SecretDistribution) -> Result<u32> {
    let idx = log_n
        .checked_sub(10)
        .filter(|&i| (i as usize) < TERNARY_128.len())
        .ok_or_else(|| {
            CkksError::InvalidParameters(format!("no security table entry for N = 2^{log_n}"))
        })? as usize;
    let dense = TERNARY_128[idx];
    match secret {
        SecretDistribution::UniformTernary => Ok(dense),
        SecretDistribution::SparseTernary { hamming_weight } => {
            if hamming_weight < MIN_SPARSE_HAMMING_WEIGHT {
                Err(CkksError::InvalidParameters(format!(
                    "sparse secret with Hamming weight {hamming_weight} < {MIN_SPARSE_HAMMING_WEIGHT} \
                     is not covered by the security table"
                )))
            } else {
                Ok(dense * 7 / 8)
            }
        }
    }
}

/// Checks that `params` meets 128-bit security; the error carries log2(QP) and the bound.
pub fn check_128(params: &CkksParameters) -> Result<()> {
    let bound = max_log_qp(params.log_n, params.secret)?;
    let log_qp = params.log_qp();
    if log_qp > bound as f64 {
        return Err(CkksError::Insecure {
            log_qp,
            bound,
            log_n: params.log_n,
            secret: params.secret.to_string(),
        });
    }
    Ok(())
}
