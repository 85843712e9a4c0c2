//! CRT reconstruction: the centered integer x ∈ (−Q/2, Q/2] with x ≡ a_i (mod q_i), returned as
//! an f64 (exact to f64 rounding, whatever the size of Q). Used by decoding.
//!
//! x = Σ_i [a_i·(Q/q_i)^{-1}]_{q_i}·(Q/q_i) − v·Q with v = ⌊Σ_i y_i/q_i⌋, computed in
//! multi-precision (little-endian 64-bit words), then centered.

use rayon::prelude::*;

use crate::ring::modulus::Modulus;

/// Precomputed CRT constants for a basis q_0 … q_ℓ.
#[derive(Debug, Clone)]
pub struct CrtReconstructor {
    moduli: Vec<Modulus>,
    words: usize,
    big_q: Vec<u64>,
    half_q: Vec<u64>,
    hats: Vec<Vec<u64>>,
    hat_inv: Vec<u64>,
}

fn mul_word(a: &[u64], w: u64, out: &mut [u64]) {
    let mut carry = 0u128;
    for (o, &x) in out.iter_mut().zip(a) {
        let t = x as u128 * w as u128 + carry;
        *o = t as u64;
        carry = t >> 64;
    }
    out[a.len()] = carry as u64;
}

/// acc += a · w, `acc` at least one word longer than `a`.
fn mul_add_word(acc: &mut [u64], a: &[u64], w: u64) {
    let mut carry = 0u128;
    for (k, &x) in a.iter().enumerate() {
        let t = acc[k] as u128 + x as u128 * w as u128 + carry;
        acc[k] = t as u64;
        carry = t >> 64;
    }
    let mut k = a.len();
    while carry != 0 && k < acc.len() {
        let t = acc[k] as u128 + carry;
        acc[k] = t as u64;
        carry = t >> 64;
        k += 1;
    }
}

/// a −= b; returns true on borrow (a < b).
fn sub_in_place(a: &mut [u64], b: &[u64]) -> bool {
    let mut borrow = 0u64;
    for (k, x) in a.iter_mut().enumerate() {
        let y = b.get(k).copied().unwrap_or(0);
        let (d1, b1) = x.overflowing_sub(y);
        let (d2, b2) = d1.overflowing_sub(borrow);
        *x = d2;
        borrow = (b1 || b2) as u64;
    }
    borrow != 0
}

fn add_in_place(a: &mut [u64], b: &[u64]) {
    let mut carry = 0u64;
    for (k, x) in a.iter_mut().enumerate() {
        let y = b.get(k).copied().unwrap_or(0);
        let (s1, c1) = x.overflowing_add(y);
        let (s2, c2) = s1.overflowing_add(carry);
        *x = s2;
        carry = (c1 || c2) as u64;
    }
}

fn cmp(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let len = a.len().max(b.len());
    for k in (0..len).rev() {
        let x = a.get(k).copied().unwrap_or(0);
        let y = b.get(k).copied().unwrap_or(0);
        if x != y {
            return x.cmp(&y);
        }
    }
    std::cmp::Ordering::Equal
}

fn to_f64(a: &[u64]) -> f64 {
    a.iter()
        .rev()
        .fold(0.0, |acc, &w| acc * 18446744073709551616.0 + w as f64)
}

impl CrtReconstructor {
    /// Constants for the basis `moduli`.
    pub fn new(moduli: &[Modulus]) -> Self {
        let words = moduli.len() + 2;
        let product = |skip: Option<usize>| {
            let mut acc = vec![0u64; words];
            acc[0] = 1;
            let mut tmp = vec![0u64; words + 1];
            for (k, m) in moduli.iter().enumerate() {
                if Some(k) == skip {
                    continue;
                }
                mul_word(&acc, m.value(), &mut tmp);
                acc.copy_from_slice(&tmp[..words]);
            }
            acc
        };
        let big_q = product(None);
        let mut half_q = big_q.clone();
        let mut carry = 0;
        for w in half_q.iter_mut().rev() {
            let nw = (*w >> 1) | (carry << 63);
            carry = *w & 1;
            *w = nw;
        }
        let hats: Vec<Vec<u64>> = (0..moduli.len()).map(|i| product(Some(i))).collect();
        let hat_inv = moduli
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let prod = moduli
                    .iter()
                    .enumerate()
                    .filter(|&(k, _)| k != i)
                    .fold(1, |acc, (_, mk)| m.mul(acc, m.reduce(mk.value())));
                m.inv(prod)
            })
            .collect();
        CrtReconstructor {
            moduli: moduli.to_vec(),
            words,
            big_q,
            half_q,
            hats,
            hat_inv,
        }
    }

    /// Centered values of the coefficients at `indices` of the coefficient-form `limbs`
    /// (limb-major, `moduli.len()` limbs of length N), as f64.
    pub fn centered_f64(&self, limbs: &[u64], n: usize, indices: &[usize]) -> Vec<f64> {
        indices
            .par_chunks(256)
            .flat_map_iter(|chunk| {
                let mut acc = vec![0u64; self.words + 1];
                let mut vq = vec![0u64; self.words + 1];
                chunk
                    .iter()
                    .map(|&c| {
                        acc.fill(0);
                        let mut frac = 0.0f64;
                        for (i, m) in self.moduli.iter().enumerate() {
                            let y = m.mul(limbs[i * n + c], self.hat_inv[i]);
                            frac += y as f64 / m.value() as f64;
                            mul_add_word(&mut acc, &self.hats[i], y);
                        }
                        let v = frac.floor() as u64;
                        mul_word(&self.big_q[..self.words], v, &mut vq);
                        if sub_in_place(&mut acc, &vq) {
                            add_in_place(&mut acc, &self.big_q);
                        }
                        while cmp(&acc, &self.big_q) != std::cmp::Ordering::Less {
                            sub_in_place(&mut acc, &self.big_q);
                        }
                        if cmp(&acc, &self.half_q) == std::cmp::Ordering::Greater {
                            let mut neg = self.big_q.clone();
                            neg.push(0);
                            sub_in_place(&mut neg, &acc);
                            -to_f64(&neg)
                        } else {
                            to_f64(&acc)
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::primes::{Search, ntt_primes};

    proptest::proptest! {
        /// RNS round trip: residues of a signed 119-bit integer reconstruct to it (as f64, within
        /// 2 ulp: the words are summed in floating point).
        #[test]
        fn rns_round_trip(v in proptest::num::i128::ANY, shift in 0u32..100) {
            let ms: Vec<Modulus> = ntt_primes(45, 10, 4, Search::Alternate, &[])
                .into_iter()
                .map(Modulus::new)
                .collect();
            let v = v >> (shift + 8); // |v| < 2^119 < Q/2 ≈ 2^179
            let limbs: Vec<u64> = ms.iter().map(|m| m.reduce_i128(v)).collect();
            let out = CrtReconstructor::new(&ms).centered_f64(&limbs, 1, &[0])[0];
            let want = v as f64;
            proptest::prop_assert!((out - want).abs() <= want.abs() * 5e-16 + 0.5, "{} vs {}", out, want);
        }
    }

    #[test]
    fn reconstructs_signed_values() {
        let ms: Vec<Modulus> = ntt_primes(45, 10, 4, Search::Alternate, &[])
            .into_iter()
            .map(Modulus::new)
            .collect();
        let crt = CrtReconstructor::new(&ms);
        let vals: [i128; 4] = [0, -1, 123456789012345678901234567, -(1i128 << 100) - 12345];
        let n = vals.len();
        let mut limbs = vec![0u64; 4 * n];
        for (c, &v) in vals.iter().enumerate() {
            for (i, m) in ms.iter().enumerate() {
                limbs[i * n + c] = m.reduce_i128(v);
            }
        }
        let out = crt.centered_f64(&limbs, n, &[0, 1, 2, 3]);
        for (o, v) in out.iter().zip(vals) {
            assert!(
                (o - v as f64).abs() <= (v as f64).abs() * 1e-15,
                "{o} vs {v}"
            );
        }
    }
}
