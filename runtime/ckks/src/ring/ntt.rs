//! Negacyclic NTT over one prime, backed by `tfhe-ntt` (AVX-512, with IFMA for primes < 2^50).
//!
//! Order: `forward` returns the evaluations a(ψ^{2·bitrev(i)+1}) at index i (bit-reversed order,
//! ψ a primitive 2N-th root chosen by tfhe-ntt); [`crate::ring::automorphism`] relies on that
//! order and a test checks it. `inverse` includes the 1/N normalisation.

use crate::error::{CkksError, Result};
use crate::ring::modulus::Modulus;
use tfhe_ntt::prime64::Plan;

/// NTT tables for one prime modulus and ring degree N.
#[derive(Clone, Debug)]
pub struct NttTable {
    plan: Plan,
    modulus: Modulus,
}

impl NttTable {
    /// Builds the plan; errors if `q` is not an NTT-friendly prime for N.
    pub fn new(n: usize, q: u64) -> Result<Self> {
        let plan = Plan::try_new(n, q).ok_or_else(|| {
            CkksError::InvalidParameters(format!("no negacyclic NTT of size {n} modulo {q}"))
        })?;
        Ok(NttTable {
            plan,
            modulus: Modulus::new(q),
        })
    }

    /// The modulus.
    #[inline]
    pub fn modulus(&self) -> &Modulus {
        &self.modulus
    }

    /// Coefficients → evaluations (bit-reversed order), in place. `a.len()` must be N.
    #[inline]
    pub fn forward(&self, a: &mut [u64]) {
        self.plan.fwd(a);
    }

    /// Evaluations → coefficients, in place, normalised by 1/N.
    #[inline]
    pub fn inverse(&self, a: &mut [u64]) {
        self.plan.inv(a);
        self.plan.normalize(a);
    }

    /// acc\[i\] += a\[i\]·b\[i\] mod q (vectorised; inputs reduced).
    #[inline]
    pub fn mul_acc(&self, acc: &mut [u64], a: &[u64], b: &[u64]) {
        self.plan.mul_accumulate(acc, a, b);
    }

    /// acc\[i\] = a\[i\]·b\[i\] mod q (vectorised; inputs reduced).
    #[inline]
    pub fn mul_into(&self, out: &mut [u64], a: &[u64], b: &[u64]) {
        out.fill(0);
        self.plan.mul_accumulate(out, a, b);
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use crate::params::primes::{Search, ntt_primes};

    /// One forward + inverse NTT at N = 2^16 per prime size (`--release -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn time_ntt_n16() {
        let n = 1 << 16;
        for bits in [45, 50, 60] {
            let q = ntt_primes(bits, 16, 1, Search::Below, &[])[0];
            let t = NttTable::new(n, q).unwrap();
            let mut a: Vec<u64> = (0..n as u64).map(|k| k * 7 % q).collect();
            let mut best = f64::MAX;
            for _ in 0..20 {
                let s = std::time::Instant::now();
                t.forward(&mut a);
                t.inverse(&mut a);
                best = best.min(s.elapsed().as_secs_f64() * 1e6);
            }
            eprintln!("{bits}-bit fwd+inv: {best:.0} µs");
        }
    }
}
