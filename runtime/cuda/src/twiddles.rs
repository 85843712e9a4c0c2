//! Host-side constant tables the kernels read: per-modulus Barrett constants and the negacyclic
//! NTT twiddles, derived from the same primes and the same 2N-th roots of unity that
//! `cachemir-ckks` (through `tfhe-ntt`) uses, so that device NTTs are bit-identical to the CPU's.
//!
//! The root: `cachemir-ckks`'s forward NTT stores a(ψ^{2·bitrev(i)+1}) at index i
//! ([`cachemir_ckks::ring::ntt`]), so the transform of the monomial X holds ψ itself at index 0.
//! We read ψ from there instead of guessing which primitive root `tfhe-ntt` picked.

use cachemir_ckks::ring::modulus::Modulus;
use cachemir_ckks::ring::ntt::NttTable;

use crate::error::CudaError;

/// Bit reversal of the low `bits` bits of `x`.
pub fn bitrev(x: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        x.reverse_bits() >> (usize::BITS - bits)
    }
}

/// Barrett constants of one prime q < 2^62: (q, ⌊2^128/q⌋ high word, low word), the layout of the
/// `moduli` table every kernel takes (three words per modulus, in the context's modulus order
/// q_0 … q_L, p_0 … p_{K−1}).
pub fn barrett_words(q: u64) -> [u64; 3] {
    let r = u128::MAX / u128::from(q);
    [q, (r >> 64) as u64, r as u64]
}

/// The twiddles of one prime for ring degree N, each with its Shoup constant ⌊w·2^64/q⌋.
///
/// - `psi_rev[k] = ψ^{bitrev(k, log N)}` (forward Cooley–Tukey, natural order in, bit-reversed
///   order out; Longa–Naehrig, CANS 2016, Alg. 1);
/// - `ipsi_rev[k] = ψ^{−bitrev(k, log N)}` (inverse Gentleman–Sande, Alg. 2);
/// - `n_inv = N^{−1} mod q`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twiddles {
    pub q: u64,
    pub psi_rev: Vec<u64>,
    pub psi_rev_shoup: Vec<u64>,
    pub ipsi_rev: Vec<u64>,
    pub ipsi_rev_shoup: Vec<u64>,
    pub n_inv: u64,
    pub n_inv_shoup: u64,
}

/// The primitive 2N-th root of unity ψ modulo `q` that `cachemir-ckks`'s NTT of degree `n`
/// evaluates at (read from the transform of X, see the module documentation).
///
/// # Errors
/// [`CudaError::Tables`] when `q` has no negacyclic NTT of size `n`, or the value read is not a
/// primitive 2N-th root (ψ^N ≠ −1).
pub fn cpu_root(n: usize, q: u64) -> Result<u64, CudaError> {
    let table = NttTable::new(n, q).map_err(|e| CudaError::Tables(e.to_string()))?;
    let mut x = vec![0u64; n];
    x[1] = 1;
    table.forward(&mut x);
    let psi = x[0];
    let m = Modulus::new(q);
    if m.pow(psi, n as u64) != q - 1 {
        return Err(CudaError::Tables(format!(
            "the NTT of X modulo {q} does not start with a primitive 2N-th root (N = {n})"
        )));
    }
    Ok(psi)
}

impl Twiddles {
    /// The tables of prime `q` for ring degree `n` (a power of two), rooted at [`cpu_root`].
    ///
    /// # Errors
    /// As [`cpu_root`].
    pub fn new(n: usize, q: u64) -> Result<Self, CudaError> {
        let log_n = n.trailing_zeros();
        let m = Modulus::new(q);
        let psi = cpu_root(n, q)?;
        let psi_inv = m.inv(psi);
        // Powers in natural order, then read at bit-reversed positions.
        let powers = |base: u64| {
            let mut p = Vec::with_capacity(n);
            let mut acc = 1u64;
            for _ in 0..n {
                p.push(acc);
                acc = m.mul(acc, base);
            }
            p
        };
        let (fwd, inv) = (powers(psi), powers(psi_inv));
        let psi_rev: Vec<u64> = (0..n).map(|k| fwd[bitrev(k, log_n)]).collect();
        let ipsi_rev: Vec<u64> = (0..n).map(|k| inv[bitrev(k, log_n)]).collect();
        let shoup = |v: &[u64]| v.iter().map(|&w| m.shoup(w)).collect::<Vec<_>>();
        let n_inv = m.inv(n as u64 % q);
        Ok(Twiddles {
            q,
            psi_rev_shoup: shoup(&psi_rev),
            ipsi_rev_shoup: shoup(&ipsi_rev),
            psi_rev,
            ipsi_rev,
            n_inv,
            n_inv_shoup: m.shoup(n_inv),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ckks::params::primes::{Search, ntt_primes};

    #[test]
    fn barrett_words_match_the_cpu_reduction() {
        let q = ntt_primes(61, 12, 1, Search::Below, &[])[0];
        let [qq, hi, lo] = barrett_words(q);
        assert_eq!(qq, q);
        let r = (u128::from(hi) << 64) | u128::from(lo);
        assert_eq!(r, u128::MAX / u128::from(q));
    }

    #[test]
    fn root_is_primitive_and_tables_are_consistent() {
        for (bits, log_n) in [(40, 10), (50, 12), (61, 13)] {
            let n = 1usize << log_n;
            let q = ntt_primes(bits, log_n, 1, Search::Below, &[])[0];
            let t = Twiddles::new(n, q).unwrap();
            let m = Modulus::new(q);
            assert_eq!(t.psi_rev[0], 1);
            // psi_rev[1] = ψ^{N/2} is a primitive 4th root: its square is −1.
            assert_eq!(m.mul(t.psi_rev[1], t.psi_rev[1]), q - 1);
            for k in [1, 7, n / 2 + 3, n - 1] {
                assert_eq!(m.mul(t.psi_rev[k], t.ipsi_rev[k]), 1, "k = {k}");
                assert_eq!(t.psi_rev_shoup[k], m.shoup(t.psi_rev[k]));
            }
            assert_eq!(m.mul(t.n_inv, n as u64), 1);
        }
    }
}
