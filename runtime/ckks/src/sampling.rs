//! Randomness: a ChaCha20 CSPRNG seeded from OS entropy for secrets and noise, and seed-expanded
//! uniform polynomials for the public "a" parts of keys (so keys can be stored as a seed).
//!
//! Distributions: uniform ternary, sparse ternary with fixed Hamming weight, rounded Gaussian
//! (σ = 3.2, tail-cut at 6σ), uniform modulo each prime (rejection sampling).
//! The Gaussian sampler is not constant time.

use rand::rngs::SysRng;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rayon::prelude::*;

use crate::error::{CkksError, Result};
use crate::ring::modulus::Modulus;
use crate::ring::ntt::NttTable;
use crate::ring::poly::RnsPoly;

/// A cryptographically secure generator (ChaCha20).
#[derive(Debug)]
pub struct Csprng(ChaCha20Rng);

impl Csprng {
    /// Seeds from OS entropy. Errors: [`CkksError::Entropy`].
    pub fn from_os() -> Result<Self> {
        ChaCha20Rng::try_from_rng(&mut SysRng)
            .map(Csprng)
            .map_err(|e| CkksError::Entropy(e.to_string()))
    }

    /// A deterministic generator from a 32-byte seed: reproducible tests and benchmarks only.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Csprng(ChaCha20Rng::from_seed(seed))
    }

    /// 32 fresh bytes (e.g. the seed of public randomness).
    pub fn seed(&mut self) -> [u8; 32] {
        let mut s = [0u8; 32];
        self.0.fill_bytes(&mut s);
        s
    }

    /// A uniform u64.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [0, 1) with 53 bits.
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// N coefficients uniform in {−1, 0, 1}.
    pub fn ternary(&mut self, n: usize) -> Vec<i8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let w = self.0.next_u64();
            for k in 0..8 {
                let b = ((w >> (8 * k)) & 0xff) as u8;
                if b < 255 && out.len() < n {
                    out.push((b % 3) as i8 - 1);
                }
            }
        }
        out
    }

    /// N coefficients with exactly `h` of them ±1 (uniform positions and signs).
    pub fn sparse_ternary(&mut self, n: usize, h: usize) -> Vec<i8> {
        let mut idx: Vec<usize> = (0..n).collect();
        let mut out = vec![0i8; n];
        for k in 0..h.min(n) {
            let j = k + (self.0.next_u64() % (n - k) as u64) as usize;
            idx.swap(k, j);
            out[idx[k]] = if self.0.next_u64() & 1 == 0 { 1 } else { -1 };
        }
        out
    }

    /// N samples of the rounded Gaussian of standard deviation `sigma`, cut at 6σ.
    pub fn gaussian(&mut self, n: usize, sigma: f64) -> Vec<i64> {
        let bound = 6.0 * sigma;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let u1 = 1.0 - self.unit();
            let u2 = self.unit();
            let r = (-2.0 * u1.ln()).sqrt() * sigma;
            let (s, c) = (2.0 * std::f64::consts::PI * u2).sin_cos();
            for z in [r * c, r * s] {
                if z.abs() <= bound && out.len() < n {
                    out.push(z.round() as i64);
                }
            }
        }
        out
    }
}

/// Domain separators of seed-expanded polynomials.
pub(crate) mod stream {
    /// Public key "a".
    pub const PUBLIC_KEY: u64 = 1 << 40;
    /// Switching key "a" of digit j: SWITCHING_KEY + j.
    pub const SWITCHING_KEY: u64 = 2 << 40;
    /// Secret-key encryption "a".
    pub const ENCRYPTION: u64 = 3 << 40;
}

/// Expands `seed` into a uniform polynomial over `moduli` (interpreted directly as NTT form).
/// Limb i uses the ChaCha20 stream (`stream` · 256 + i), so the result does not depend on the
/// number of threads.
pub fn expand_uniform(seed: &[u8; 32], stream: u64, moduli: &[Modulus], n: usize) -> RnsPoly {
    let mut poly = RnsPoly::zero(n, moduli.len());
    poly.par_limbs_mut()
        .zip(moduli.par_iter())
        .enumerate()
        .for_each(|(i, (limb, m))| {
            let mut rng = ChaCha20Rng::from_seed(*seed);
            rng.set_stream((stream << 8) | i as u64);
            let q = m.value();
            let mask = u64::MAX >> q.leading_zeros();
            for x in limb.iter_mut() {
                *x = loop {
                    let v = rng.next_u64() & mask;
                    if v < q {
                        break v;
                    }
                };
            }
        });
    poly
}

/// A small signed polynomial (coefficient form) as an RNS polynomial in NTT form over `tables`.
pub fn small_to_ntt<T: Copy + Into<i64> + Sync>(coeffs: &[T], tables: &[&NttTable]) -> RnsPoly {
    let n = coeffs.len();
    let mut poly = RnsPoly::zero(n, tables.len());
    poly.par_limbs_mut()
        .zip(tables.par_iter())
        .for_each(|(limb, t)| {
            let m = t.modulus();
            for (x, &c) in limb.iter_mut().zip(coeffs) {
                *x = m.reduce_i64(c.into());
            }
            t.forward(limb);
        });
    poly
}
