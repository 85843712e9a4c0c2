//! Fast basis conversion between RNS bases (Bajard–Eynard–Hasan–Zucca, SAC 2016, §2.2; used for
//! ModUp/ModDown by Cheon–Han–Kim–Kim–Song, SAC 2018, §3):
//!
//! Conv_{B→C}(x)_j = Σ_i [x_i · (B/b_i)^{-1}]_{b_i} · (B/b_i) mod c_j,
//!
//! which equals x + u·B for a small integer u ∈ [0, |B|). We subtract v·B with
//! v = round(Σ_i y_i / b_i) computed in floating point (the correction of Halevi–Polyakov–Shoup,
//! CT-RSA 2019, §2.4), so the result is the *centered* representative of x mod B (exact except
//! within ~2^-40·B of ±B/2): ModDown then rounds instead of adding up to |B| of error.
//! Products are accumulated in 128 bits and reduced once per output residue (lazy reduction).

use rayon::prelude::*;

use crate::ring::basis_ifma::{self, Reducer};
use std::mem::MaybeUninit;

use crate::ring::modulus::Modulus;
use crate::ring::poly::assume_init;

/// Precomputed constants to convert coefficient-form residues from basis B to basis C.
#[derive(Clone, Debug)]
pub struct BasisConverter {
    from: Vec<Modulus>,
    to: Vec<Modulus>,
    /// (B/b_i)^{-1} mod b_i and its Shoup constant.
    hat_inv: Vec<(u64, u64)>,
    /// (B/b_i) mod c_j, stored at [j · |B| + i].
    hat_mod_to: Vec<u64>,
    /// −B mod c_j.
    neg_b_mod_to: Vec<u64>,
    /// 1 / b_i as f64.
    inv_from: Vec<f64>,
    /// IFMA reducers per target (None where the scalar path is used).
    ifma: Vec<Option<Reducer>>,
    /// Sources b_i ≥ 2^50: their y_i is split as y_lo + 2^30·y_hi (two virtual limbs of < 2^31)
    /// so the 52-bit IFMA kernel applies; weights gain (B/b_i)·2^30 mod c_j.
    big: Vec<usize>,
}

impl BasisConverter {
    /// Constants for B = `from` → C = `to` (all primes distinct, |B| ≤ 16).
    pub fn new(from: &[Modulus], to: &[Modulus]) -> Self {
        let hat_inv = from
            .iter()
            .enumerate()
            .map(|(i, bi)| {
                let prod = from
                    .iter()
                    .enumerate()
                    .filter(|&(k, _)| k != i)
                    .fold(1u64, |acc, (_, bk)| bi.mul(acc, bi.reduce(bk.value())));
                let inv = bi.inv(prod);
                (inv, bi.shoup(inv))
            })
            .collect();
        let mut hat_mod_to = Vec::with_capacity(to.len() * from.len());
        for cj in to {
            for i in 0..from.len() {
                let v = from
                    .iter()
                    .enumerate()
                    .filter(|&(k, _)| k != i)
                    .fold(1u64, |acc, (_, bk)| cj.mul(acc, cj.reduce(bk.value())));
                hat_mod_to.push(v);
            }
        }
        let neg_b_mod_to = to
            .iter()
            .map(|cj| {
                let b = from
                    .iter()
                    .fold(1u64, |acc, bk| cj.mul(acc, cj.reduce(bk.value())));
                cj.neg(b)
            })
            .collect();
        let inv_from = from.iter().map(|b| 1.0 / b.value() as f64).collect();
        let small = |m: &Modulus| m.value() < 1 << 50;
        let big: Vec<usize> = (0..from.len()).filter(|&i| !small(&from[i])).collect();
        let nb = from.len();
        let nw = nb + big.len();
        // Weights per target: the |B| originals, then (B/b_i)·2^30 for each big source.
        let hat_mod_to: Vec<u64> = to
            .iter()
            .enumerate()
            .flat_map(|(j, cj)| {
                let row = &hat_mod_to[j * nb..(j + 1) * nb];
                let two30 = cj.reduce(1 << 30);
                row.iter()
                    .copied()
                    .chain(big.iter().map(move |&i| cj.mul(row[i], two30)))
                    .collect::<Vec<_>>()
            })
            .collect();
        let use_ifma = basis_ifma::available() && nw <= 14;
        let ifma = to
            .iter()
            .map(|t| (use_ifma && small(t)).then(|| Reducer::new(t)))
            .collect();
        BasisConverter {
            big,
            ifma,
            neg_b_mod_to,
            inv_from,
            from: from.to_vec(),
            to: to.to_vec(),
            hat_inv,
            hat_mod_to,
        }
    }

    /// Number of source limbs |B|.
    pub fn from_len(&self) -> usize {
        self.from.len()
    }

    /// Number of target limbs |C|.
    pub fn to_len(&self) -> usize {
        self.to.len()
    }

    /// Words of scratch space [`BasisConverter::convert`] needs for ring degree `n`.
    pub fn scratch_len(&self, n: usize) -> usize {
        (self.from.len() + self.big.len() + 1) * n
    }

    /// Converts coefficient-form `input` (|B| limbs of N, limb-major) into the target limbs
    /// `outs[j]` (the first `outs.len()` primes of C, each a slice of N). `scratch` must hold
    /// [`BasisConverter::scratch_len`] words. Parallel over target limbs. The output is the centered
    /// representative of x mod B reduced into each c_j. `post(j, limb)` runs on each finished
    /// output limb while it is still in cache (e.g. its forward NTT).
    pub fn convert(
        &self,
        input: &[u64],
        outs: &mut [&mut [MaybeUninit<u64>]],
        scratch: &mut [u64],
        post: &(dyn Fn(usize, &mut [u64]) + Sync),
    ) {
        let outs: Vec<&mut [MaybeUninit<u64>]> = outs.iter_mut().map(|o| &mut **o).collect();
        self.convert_many(&[input], vec![outs], vec![scratch], &|j, limbs| {
            post(j, &mut *limbs[0])
        });
    }

    /// [`BasisConverter::convert`] of several inputs at once (`outs[k]` and `scratches[k]` for
    /// `inputs[k]`, the same targets for all): `post(j, limbs)` gets target j's limb of every
    /// output together, so key switching can finish both halves of a result in one pass.
    pub fn convert_many(
        &self,
        inputs: &[&[u64]],
        outs: Vec<Vec<&mut [MaybeUninit<u64>]>>,
        scratches: Vec<&mut [u64]>,
        post: &(dyn Fn(usize, &mut [&mut [u64]]) + Sync),
    ) {
        let nb = self.from.len();
        let nw = nb + self.big.len();
        let n = inputs[0].len() / nb;
        let prepared: Vec<(&[u64], &[u64])> = inputs
            .iter()
            .zip(scratches)
            .map(|(x, s)| self.prepare(x, s, n))
            .collect();
        let targets = outs[0].len();
        let mut per_target: Vec<(usize, Vec<&mut [MaybeUninit<u64>]>)> = (0..targets)
            .map(|j| (j, Vec::with_capacity(inputs.len())))
            .collect();
        for o in outs {
            for (j, limb) in o.into_iter().enumerate() {
                per_target[j].1.push(limb);
            }
        }
        // IFMA targets go in groups of up to GROUP sharing each y load.
        #[allow(unused_mut)]
        let (mut vector, mut scalar): (Vec<_>, Vec<_>) = per_target
            .into_iter()
            .partition(|(j, _)| self.ifma[*j].is_some() && n.is_multiple_of(8));
        #[cfg(target_arch = "x86_64")]
        vector.par_chunks_mut(basis_ifma::GROUP).for_each(|group| {
            let js: Vec<usize> = group.iter().map(|(j, _)| *j).collect();
            let w: Vec<&[u64]> = js
                .iter()
                .map(|&j| &self.hat_mod_to[j * nw..(j + 1) * nw])
                .collect();
            let reds: Vec<&Reducer> = js.iter().filter_map(|&j| self.ifma[j].as_ref()).collect();
            let nbs: Vec<u64> = js.iter().map(|&j| self.neg_b_mod_to[j]).collect();
            for (k, (y, v)) in prepared.iter().enumerate() {
                let mut gouts: Vec<&mut [MaybeUninit<u64>]> =
                    group.iter_mut().map(|(_, o)| &mut *o[k]).collect();
                // SAFETY: IFMA was detected at construction; (split) sources, weights, v and
                // −B mod t are below 2^50 (checked in `new`), at most 14 weights, N-word slices.
                unsafe { basis_ifma::conv_group(y, n, &w, v, &nbs, &mut gouts, &reds) };
            }
            for (j, o) in group.iter_mut() {
                // SAFETY: conv_group wrote all n residues of every output.
                let mut limbs: Vec<&mut [u64]> =
                    o.iter_mut().map(|l| unsafe { assume_init(l) }).collect();
                post(*j, &mut limbs);
            }
        });
        #[cfg(not(target_arch = "x86_64"))]
        scalar.append(&mut vector);
        scalar.par_iter_mut().for_each(|(j, o)| {
            let j = *j;
            for ((y, v), out) in prepared.iter().zip(o.iter_mut()) {
                self.convert_limb_scalar(j, y, v, n, out);
            }
            // SAFETY: convert_limb_scalar wrote all n residues of every output.
            let mut limbs: Vec<&mut [u64]> =
                o.iter_mut().map(|l| unsafe { assume_init(l) }).collect();
            post(j, &mut limbs);
        });
    }

    /// y_i = x_i·(B/b_i)^{-1} mod b_i (big sources split into two 30-bit halves) and the HPS
    /// correction v = round(Σ_i y_i/b_i), in `scratch`; returns (y, v).
    fn prepare<'s>(
        &self,
        input: &[u64],
        scratch: &'s mut [u64],
        n: usize,
    ) -> (&'s [u64], &'s [u64]) {
        let nb = self.from.len();
        let nw = nb + self.big.len();
        let (scratch, v) = scratch[..(nw + 1) * n].split_at_mut(nw * n);
        scratch
            .par_chunks_exact_mut(n)
            .zip(input.par_chunks_exact(n))
            .enumerate()
            .for_each(|(i, (y, x))| {
                let (w, ws) = self.hat_inv[i];
                let m = &self.from[i];
                for (yv, &xv) in y.iter_mut().zip(x) {
                    *yv = m.mul_shoup(xv, w, ws);
                }
            });
        // v = round(Σ_i y_i / b_i): the multiple of B to remove for the centered value.
        let y = &*scratch;
        const CHUNK: usize = 1024;
        v.par_chunks_mut(CHUNK).enumerate().for_each(|(c, vc)| {
            // Limb by limb over a chunk (vectorisable), then round.
            let mut f = [0.0f64; CHUNK];
            let f = &mut f[..vc.len()];
            for (i, &inv) in self.inv_from.iter().enumerate() {
                let yi = &y[i * n + c * CHUNK..i * n + c * CHUNK + f.len()];
                for (a, &yv) in f.iter_mut().zip(yi) {
                    *a += yv as f64 * inv;
                }
            }
            for (out, &a) in vc.iter_mut().zip(f.iter()) {
                *out = a.round() as u64;
            }
        });
        // Split the big sources into two virtual limbs.
        for (k, &i) in self.big.iter().enumerate() {
            let (lo, hi) = scratch.split_at_mut((nb + k) * n);
            for (a, b) in lo[i * n..(i + 1) * n].iter_mut().zip(&mut hi[..n]) {
                *b = *a >> 30;
                *a &= (1 << 30) - 1;
            }
        }
        (&*scratch, &*v)
    }

    /// Portable kernel for target j: out = (Σ_i y_i·w_ji + v·(−B)) mod c_j, lazily reduced.
    fn convert_limb_scalar(
        &self,
        j: usize,
        y: &[u64],
        v: &[u64],
        n: usize,
        o: &mut [MaybeUninit<u64>],
    ) {
        let nw = self.from.len() + self.big.len();
        let w = &self.hat_mod_to[j * nw..(j + 1) * nw];
        let neg_b = self.neg_b_mod_to[j];
        let m = &self.to[j];
        const BLOCK: usize = 64;
        let mut acc = [0u128; BLOCK];
        for start in (0..n).step_by(BLOCK) {
            let len = BLOCK.min(n - start);
            acc[..len].fill(0);
            for (i, &wi) in w.iter().enumerate() {
                let yi = &y[i * n + start..i * n + start + len];
                for (a, &yv) in acc[..len].iter_mut().zip(yi) {
                    *a += yv as u128 * wi as u128;
                }
            }
            for (a, &vc) in acc[..len].iter_mut().zip(&v[start..start + len]) {
                *a += vc as u128 * neg_b as u128;
            }
            for (dst, &a) in o[start..start + len].iter_mut().zip(&acc[..len]) {
                dst.write(m.reduce_u128(a));
            }
        }
    }
}

/// Views an initialised buffer as `MaybeUninit` (to reuse it as a conversion output).
pub fn as_uninit(s: &mut [u64]) -> &mut [MaybeUninit<u64>] {
    // SAFETY: same layout; writing initialised values into it keeps it initialised.
    unsafe { &mut *(s as *mut [u64] as *mut [MaybeUninit<u64>]) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::primes::{Search, ntt_primes};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Conv(x) is the centered representative of x mod B.
        #[test]
        fn conversion_is_exact_up_to_multiple_of_b(xs in proptest::collection::vec(any::<u64>(), 3)) {
            let b: Vec<Modulus> = ntt_primes(30, 10, 3, Search::Below, &[]).into_iter().map(Modulus::new).collect();
            let c: Vec<Modulus> = ntt_primes(50, 10, 2, Search::Below, &[]).into_iter().map(Modulus::new).collect();
            let big_b: u128 = b.iter().map(|m| m.value() as u128).product();
            let x = (xs[0] as u128 * xs[1] as u128) % big_b;
            let n = 16;
            let mut input = vec![0u64; 3 * n];
            for (i, m) in b.iter().enumerate() { input[i * n] = (x % m.value() as u128) as u64; }
            let conv = BasisConverter::new(&b, &c);
            let mut out = vec![0u64; 2 * n];
            let mut scratch = vec![0u64; conv.scratch_len(n)];
            {
                let mut outs: Vec<&mut [MaybeUninit<u64>]> = as_uninit(&mut out).chunks_exact_mut(n).collect();
                conv.convert(&input, &mut outs, &mut scratch, &|_, _| {});
            }
            let centered: i128 = if x > big_b / 2 { x as i128 - big_b as i128 } else { x as i128 };
            for (j, m) in c.iter().enumerate() {
                prop_assert_eq!(out[j * n], m.reduce_i128(centered));
            }
        }
    }
}

#[cfg(test)]
mod kernel_tests {
    use super::*;
    use crate::params::primes::{Search, ntt_primes};

    /// The vectorised path (N multiple of 32) agrees with a direct u128 evaluation.
    #[test]
    fn vector_path_matches_reference() {
        let n = 1024;
        let b: Vec<Modulus> = ntt_primes(50, 10, 8, Search::Below, &[])
            .into_iter()
            .map(Modulus::new)
            .collect();
        let mut c: Vec<Modulus> = ntt_primes(45, 10, 5, Search::Alternate, &[])
            .into_iter()
            .map(Modulus::new)
            .collect();
        c.push(Modulus::new(ntt_primes(60, 10, 1, Search::Below, &[])[0]));
        let conv = BasisConverter::new(&b, &c);
        let mut s = 12345u64;
        let input: Vec<u64> = (0..8 * n)
            .map(|k| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s % b[k / n].value()
            })
            .collect();
        let mut out = vec![0u64; c.len() * n];
        let mut scratch = vec![0u64; conv.scratch_len(n)];
        {
            let mut outs: Vec<&mut [MaybeUninit<u64>]> =
                as_uninit(&mut out).chunks_exact_mut(n).collect();
            conv.convert(&input, &mut outs, &mut scratch, &|_, _| {});
        }
        for coef in (0..n).step_by(37) {
            let y: Vec<u64> = (0..8)
                .map(|i| b[i].mul(input[i * n + coef], conv.hat_inv[i].0))
                .collect();
            let f: f64 = (0..8).map(|i| y[i] as f64 / b[i].value() as f64).sum();
            let v = f.round() as u128;
            for (j, m) in c.iter().enumerate() {
                let mut acc: u128 = (0..8)
                    .map(|i| y[i] as u128 * conv.hat_mod_to[j * 8 + i] as u128)
                    .sum();
                acc += v * conv.neg_b_mod_to[j] as u128;
                assert_eq!(
                    out[j * n + coef],
                    m.reduce_u128(acc),
                    "coef {coef} target {j}"
                );
            }
        }
    }
}

#[cfg(test)]
mod bench {
    use super::*;
    use crate::params::primes::{Search, ntt_primes};

    /// Conversion 8 → 23 limbs at N = 2^16 (run with `--release -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn time_conversion_n16() {
        let n = 1 << 16;
        let b: Vec<Modulus> = ntt_primes(50, 16, 8, Search::Below, &[])
            .into_iter()
            .map(Modulus::new)
            .collect();
        let c: Vec<Modulus> = ntt_primes(45, 16, 23, Search::Alternate, &[])
            .into_iter()
            .map(Modulus::new)
            .collect();
        let conv = BasisConverter::new(&b, &c);
        let input: Vec<u64> = (0..8 * n)
            .map(|k| (k as u64 * 0x9E3779B97F4A7C15) % b[k / n].value())
            .collect();
        let mut out = vec![0u64; 23 * n];
        let mut scratch = vec![0u64; conv.scratch_len(n)];
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let mut outs: Vec<&mut [MaybeUninit<u64>]> =
                as_uninit(&mut out).chunks_exact_mut(n).collect();
            conv.convert(&input, &mut outs, &mut scratch, &|_, _| {});
            eprintln!("convert 8->23 at N=2^16: {:?}", t.elapsed());
        }
    }
}
