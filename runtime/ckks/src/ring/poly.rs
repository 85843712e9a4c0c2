//! RNS polynomials: `limbs × N` residues stored limb-major in one buffer. Which prime each limb
//! belongs to is fixed by the caller (ciphertexts at level ℓ use q_0 … q_ℓ; extended polynomials
//! in key switching append p_0 … p_{K−1}). Polynomials are in NTT form unless a function says
//! otherwise.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use std::mem::MaybeUninit;

use crate::ring::modulus::Modulus;

/// Copies `src` into the uninitialised `dst` (same length) and returns it as initialised.
pub fn write_copy<'a>(dst: &'a mut [MaybeUninit<u64>], src: &[u64]) -> &'a mut [u64] {
    assert_eq!(dst.len(), src.len());
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(s);
    }
    // SAFETY: every element was just written.
    unsafe { assume_init(dst) }
}

/// Views a fully initialised `MaybeUninit` slice as initialised.
///
/// # Safety
/// Every element of `s` must be initialised.
pub unsafe fn assume_init(s: &mut [MaybeUninit<u64>]) -> &mut [u64] {
    // SAFETY: MaybeUninit<u64> has the layout of u64 and the caller guarantees initialisation.
    unsafe { &mut *(s as *mut [MaybeUninit<u64>] as *mut [u64]) }
}
use crate::ring::ntt::NttTable;

/// An RNS polynomial: `num_limbs()` residue vectors of length N.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub struct RnsPoly {
    n: usize,
    data: Vec<u64>,
}

impl RnsPoly {
    /// The zero polynomial with `limbs` limbs.
    pub fn zero(n: usize, limbs: usize) -> Self {
        RnsPoly {
            n,
            data: vec![0; n * limbs],
        }
    }

    /// Builds a polynomial whose every residue is written by `init` (limb-major, `limbs × n`
    /// words), without zero-filling the buffer first (hot paths write each limb anyway).
    ///
    /// # Safety
    /// `init` must initialise every element of the slice it receives.
    pub unsafe fn new_uninit_with(
        n: usize,
        limbs: usize,
        init: impl FnOnce(&mut [MaybeUninit<u64>]),
    ) -> Self {
        let len = n * limbs;
        let mut data: Vec<u64> = Vec::with_capacity(len);
        init(&mut data.spare_capacity_mut()[..len]);
        // SAFETY: the caller guarantees `init` initialised all `len` elements.
        unsafe { data.set_len(len) };
        RnsPoly { n, data }
    }

    /// Wraps a limb-major buffer (`data.len()` must be a multiple of N).
    pub fn from_data(n: usize, data: Vec<u64>) -> Self {
        debug_assert_eq!(data.len() % n, 0);
        RnsPoly { n, data }
    }

    /// Ring degree N.
    #[inline]
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of RNS limbs.
    #[inline]
    pub fn num_limbs(&self) -> usize {
        self.data.len() / self.n
    }

    /// Limb `i` (residues modulo the i-th prime of the basis).
    #[inline]
    pub fn limb(&self, i: usize) -> &[u64] {
        &self.data[i * self.n..(i + 1) * self.n]
    }

    /// Mutable limb `i`.
    #[inline]
    pub fn limb_mut(&mut self, i: usize) -> &mut [u64] {
        &mut self.data[i * self.n..(i + 1) * self.n]
    }

    /// All residues, limb-major.
    #[inline]
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// All residues, limb-major, mutable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u64] {
        &mut self.data
    }

    /// Parallel iterator over the limbs.
    pub fn par_limbs(&self) -> rayon::slice::ChunksExact<'_, u64> {
        self.data.par_chunks_exact(self.n)
    }

    /// Parallel iterator over the mutable limbs.
    pub fn par_limbs_mut(&mut self) -> rayon::slice::ChunksExactMut<'_, u64> {
        let n = self.n;
        self.data.par_chunks_exact_mut(n)
    }

    /// Keeps the first `limbs` limbs (dropping the top primes: level-down in NTT or coefficient form).
    pub fn truncate(&mut self, limbs: usize) {
        self.data.truncate(limbs * self.n);
    }

    /// A copy of the first `limbs` limbs.
    pub fn prefix(&self, limbs: usize) -> RnsPoly {
        RnsPoly {
            n: self.n,
            data: self.data[..limbs * self.n].to_vec(),
        }
    }

    /// Restricts a polynomial over the full extended basis (q_0 … q_L, p_0 … p_{K−1}, with
    /// `q_limbs` = L + 1) to Q_ℓ·P: limbs 0 … ℓ and the K special limbs.
    pub fn restrict_ext(&self, q_limbs: usize, level: usize) -> RnsPoly {
        let mut data = self.data[..(level + 1) * self.n].to_vec();
        data.extend_from_slice(&self.data[q_limbs * self.n..]);
        RnsPoly { n: self.n, data }
    }

    /// The first `limbs` limbs of `self` in coefficient form: each limb is copied and inverse-NTT'ed
    /// while in cache.
    pub fn intt_prefix(&self, limbs: usize, tables: &[&NttTable]) -> RnsPoly {
        self.intt_range(0, &tables[..limbs])
    }

    /// Limbs `start .. start + tables.len()` of `self` in coefficient form (copy + inverse NTT
    /// per limb, while in cache).
    pub fn intt_range(&self, start: usize, tables: &[&NttTable]) -> RnsPoly {
        let n = self.n;
        let init = |buf: &mut [MaybeUninit<u64>]| {
            buf.par_chunks_exact_mut(n)
                .zip(self.data[start * n..].par_chunks_exact(n))
                .zip(tables.par_iter())
                .for_each(|((o, i), t)| t.inverse(write_copy(o, i)));
        };
        // SAFETY: every limb is fully written by `write_copy`.
        unsafe { RnsPoly::new_uninit_with(n, tables.len(), init) }
    }

    /// Forward NTT of every limb; `tables[i]` is limb i's prime.
    pub fn ntt(&mut self, tables: &[&NttTable]) {
        self.par_limbs_mut()
            .zip(tables.par_iter())
            .for_each(|(l, t)| t.forward(l));
    }

    /// Inverse NTT of every limb.
    pub fn intt(&mut self, tables: &[&NttTable]) {
        self.par_limbs_mut()
            .zip(tables.par_iter())
            .for_each(|(l, t)| t.inverse(l));
    }

    /// self += other (limb-wise, first `self.num_limbs()` limbs of `other`).
    pub fn add_assign(&mut self, other: &RnsPoly, moduli: &[Modulus]) {
        let n = self.n;
        self.par_limbs_mut()
            .zip(other.data.par_chunks_exact(n))
            .zip(moduli.par_iter())
            .for_each(|((a, b), m)| {
                let q = m.value();
                for (x, &y) in a.iter_mut().zip(b) {
                    let s = *x + y;
                    *x = if s >= q { s - q } else { s };
                }
            });
    }

    /// self −= other.
    pub fn sub_assign(&mut self, other: &RnsPoly, moduli: &[Modulus]) {
        let n = self.n;
        self.par_limbs_mut()
            .zip(other.data.par_chunks_exact(n))
            .zip(moduli.par_iter())
            .for_each(|((a, b), m)| {
                let q = m.value();
                for (x, &y) in a.iter_mut().zip(b) {
                    *x = if *x >= y { *x - y } else { *x + q - y };
                }
            });
    }

    /// self = −self.
    pub fn neg_assign(&mut self, moduli: &[Modulus]) {
        self.par_limbs_mut()
            .zip(moduli.par_iter())
            .for_each(|(a, m)| {
                let q = m.value();
                for x in a.iter_mut() {
                    *x = if *x == 0 { 0 } else { q - *x };
                }
            });
    }

    /// self = self ⊙ other (pointwise, NTT form).
    pub fn mul_assign(&mut self, other: &RnsPoly, tables: &[&NttTable]) {
        let n = self.n;
        self.par_limbs_mut()
            .zip(other.data.par_chunks_exact(n))
            .zip(tables.par_iter())
            .for_each(|((a, b), t)| {
                let m = t.modulus();
                for (x, &y) in a.iter_mut().zip(b) {
                    *x = m.mul(*x, y);
                }
            });
    }

    /// self += a ⊙ b (pointwise, NTT form).
    pub fn mul_acc(&mut self, a: &RnsPoly, b: &RnsPoly, tables: &[&NttTable]) {
        let n = self.n;
        self.par_limbs_mut()
            .zip(a.data.par_chunks_exact(n))
            .zip(b.data.par_chunks_exact(n))
            .zip(tables.par_iter())
            .for_each(|(((acc, x), y), t)| t.mul_acc(acc, x, y));
    }

    /// self = self · c_i in limb i (a per-limb scalar, e.g. an integer constant reduced mod q_i).
    pub fn mul_scalar_assign(&mut self, scalars: &[u64], moduli: &[Modulus]) {
        self.par_limbs_mut()
            .zip(scalars.par_iter())
            .zip(moduli.par_iter())
            .for_each(|((a, &c), m)| {
                let cs = m.shoup(c);
                for x in a.iter_mut() {
                    *x = m.mul_shoup(*x, c, cs);
                }
            });
    }

    /// self += c_i on every residue of limb i (adds the constant polynomial c in NTT form).
    pub fn add_scalar_assign(&mut self, scalars: &[u64], moduli: &[Modulus]) {
        self.par_limbs_mut()
            .zip(scalars.par_iter())
            .zip(moduli.par_iter())
            .for_each(|((a, &c), m)| {
                for x in a.iter_mut() {
                    *x = m.add(*x, c);
                }
            });
    }
}
