//! Host-side tables of fast basis conversion (ModUp, ModDown) and of hybrid key switching's
//! digit partition, mirroring `cachemir-ckks` (`ring::basis`, `ops::keyswitch`, `context`) so the
//! device computes the same residues.
//!
//! Conversion from B = {b_i} to a target c (Bajard–Eynard–Hasan–Zucca, SAC 2016, §2.2, with the
//! Halevi–Polyakov–Shoup correction, CT-RSA 2019, §2.4):
//! y_i = \[x_i·(B/b_i)^{−1}\]_{b_i}, v = round(Σ_i y_i·(1/b_i)) in f64 summed in limb order from 0.0
//! without fused multiply-adds (the kernels are compiled with `--fmad=false` so the rounding,
//! hence v, is the CPU's), out = (Σ_i y_i·\[B/b_i\]_c + v·\[−B\]_c) mod c.
//!
//! Digits (Han–Ki, CT-RSA 2020, §3): at level ℓ digit j holds limbs j·α … min((j+1)·α, ℓ+1) − 1
//! of q_0 … q_ℓ, α = ⌈(L+1)/dnum⌉; its ModUp targets are the other limbs of Q_ℓ·P in order.

use cachemir_ckks::ring::modulus::Modulus;

/// Constants of one conversion B → C.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversionTable {
    /// Modulus indices (context order: q_0 … q_L, p_0 … p_{K−1}) of the sources.
    pub from: Vec<u32>,
    /// Modulus indices of the targets.
    pub to: Vec<u32>,
    /// (B/b_i)^{−1} mod b_i.
    pub hat_inv: Vec<u64>,
    /// Shoup constants of `hat_inv`.
    pub hat_inv_shoup: Vec<u64>,
    /// 1/b_i in f64 (exactly as the CPU computes it: `1.0 / b_i as f64`).
    pub inv_from: Vec<f64>,
    /// (B/b_i) mod c_j at \[j·|B| + i\].
    pub hat_mod_to: Vec<u64>,
    /// −B mod c_j.
    pub neg_b_mod_to: Vec<u64>,
}

impl ConversionTable {
    /// Constants from the sources `from` to the targets `to` (indices into `moduli`).
    pub fn new(moduli: &[Modulus], from: &[u32], to: &[u32]) -> Self {
        let b: Vec<&Modulus> = from.iter().map(|&i| &moduli[i as usize]).collect();
        let hat_inv: Vec<u64> = (0..b.len())
            .map(|i| {
                let bi = b[i];
                let prod = (0..b.len())
                    .filter(|&k| k != i)
                    .fold(1u64, |acc, k| bi.mul(acc, bi.reduce(b[k].value())));
                bi.inv(prod)
            })
            .collect();
        let hat_inv_shoup = hat_inv.iter().zip(&b).map(|(&w, m)| m.shoup(w)).collect();
        let mut hat_mod_to = Vec::with_capacity(to.len() * b.len());
        let mut neg_b_mod_to = Vec::with_capacity(to.len());
        for &t in to {
            let c = &moduli[t as usize];
            for i in 0..b.len() {
                let v = (0..b.len())
                    .filter(|&k| k != i)
                    .fold(1u64, |acc, k| c.mul(acc, c.reduce(b[k].value())));
                hat_mod_to.push(v);
            }
            let all = b
                .iter()
                .fold(1u64, |acc, bk| c.mul(acc, c.reduce(bk.value())));
            neg_b_mod_to.push(c.neg(all));
        }
        ConversionTable {
            from: from.to_vec(),
            to: to.to_vec(),
            hat_inv,
            hat_inv_shoup,
            inv_from: b.iter().map(|m| 1.0 / m.value() as f64).collect(),
            hat_mod_to,
            neg_b_mod_to,
        }
    }

    /// The conversion kernels' arithmetic on the host (coefficient form, limb-major `input` of
    /// |B| limbs of `n`): returns |C| limbs of `n`.
    pub fn convert_model(&self, moduli: &[Modulus], input: &[u64], n: usize) -> Vec<u64> {
        let nb = self.from.len();
        let mut y = vec![0u64; nb * n];
        let mut v = vec![0u64; n];
        for k in 0..n {
            let mut f = 0.0f64;
            for i in 0..nb {
                let m = &moduli[self.from[i] as usize];
                let yi = m.mul_shoup(input[i * n + k], self.hat_inv[i], self.hat_inv_shoup[i]);
                y[i * n + k] = yi;
                f += yi as f64 * self.inv_from[i];
            }
            v[k] = f.round() as u64;
        }
        let mut out = vec![0u64; self.to.len() * n];
        for (j, &t) in self.to.iter().enumerate() {
            let c = &moduli[t as usize];
            for k in 0..n {
                let mut acc = 0u64;
                for i in 0..nb {
                    acc = c.add(
                        acc,
                        c.mul(c.reduce(y[i * n + k]), self.hat_mod_to[j * nb + i]),
                    );
                }
                acc = c.add(acc, c.mul(c.reduce(v[k]), self.neg_b_mod_to[j]));
                out[j * n + k] = acc;
            }
        }
        out
    }
}

/// The limbs of digit `digit` at `level`: `start..end` of q_0 … q_ℓ (empty when the digit does
/// not exist at that level).
pub fn digit_range(alpha: usize, digit: usize, level: usize) -> std::ops::Range<usize> {
    let start = digit * alpha;
    let end = ((digit + 1) * alpha).min(level + 1);
    start..end.max(start)
}

/// Number of digits of a ciphertext at `level`: ⌈(ℓ+1)/α⌉.
pub fn digits_at(alpha: usize, level: usize) -> usize {
    (level + 1).div_ceil(alpha)
}

/// Modulus indices of the extended basis Q_ℓ·P: q_0 … q_ℓ then p_0 … p_{K−1} (stored after the
/// L + 1 = `nq` primes of Q).
pub fn ext_indices(nq: usize, k: usize, level: usize) -> Vec<u32> {
    (0..=level as u32)
        .chain((nq as u32)..(nq + k) as u32)
        .collect()
}

/// The ModUp conversion of digit `digit` at `level`: its own limbs → every other limb of Q_ℓ·P
/// (targets in extended-basis order), and the positions of those targets in Q_ℓ·P.
pub fn modup_table(
    moduli: &[Modulus],
    nq: usize,
    alpha: usize,
    digit: usize,
    level: usize,
) -> Option<(ConversionTable, Vec<u32>)> {
    let range = digit_range(alpha, digit, level);
    if range.is_empty() {
        return None;
    }
    let k = moduli.len() - nq;
    let ext = ext_indices(nq, k, level);
    let from: Vec<u32> = range.clone().map(|i| i as u32).collect();
    let (positions, to): (Vec<u32>, Vec<u32>) = ext
        .iter()
        .enumerate()
        .filter(|(t, _)| !range.contains(t))
        .map(|(t, &m)| (t as u32, m))
        .unzip();
    Some((ConversionTable::new(moduli, &from, &to), positions))
}

/// The ModDown conversion P → Q_L (the first ℓ + 1 targets serve level ℓ).
pub fn moddown_table(moduli: &[Modulus], nq: usize) -> ConversionTable {
    let from: Vec<u32> = (nq as u32..moduli.len() as u32).collect();
    let to: Vec<u32> = (0..nq as u32).collect();
    ConversionTable::new(moduli, &from, &to)
}

/// P^{−1} mod q_i for every q_i, and P mod q_i (both for i = 0 … L).
pub fn p_constants(moduli: &[Modulus], nq: usize) -> (Vec<u64>, Vec<u64>) {
    let p_mod: Vec<u64> = moduli[..nq]
        .iter()
        .map(|m| {
            moduli[nq..]
                .iter()
                .fold(1u64, |acc, p| m.mul(acc, m.reduce(p.value())))
        })
        .collect();
    let p_inv = moduli[..nq]
        .iter()
        .zip(&p_mod)
        .map(|(m, &p)| m.inv(p))
        .collect();
    (p_inv, p_mod)
}

/// q_ℓ^{−1} mod q_i for i < ℓ (rescale from level ℓ).
pub fn rescale_inverses(moduli: &[Modulus], level: usize) -> Vec<u64> {
    let ql = moduli[level].value();
    moduli[..level]
        .iter()
        .map(|m| m.inv(m.reduce(ql)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ckks::params::primes::{Search, ntt_primes};
    use cachemir_ckks::ring::basis::{BasisConverter, as_uninit};
    use std::mem::MaybeUninit;

    /// The host model of the conversion kernels equals `cachemir-ckks`'s converter residue for
    /// residue, for 50- and 61-bit sources (the CPU splits the latter for its IFMA kernel).
    #[test]
    fn conversion_model_matches_the_cpu_converter() {
        let n = 256;
        for (src_bits, dst_bits) in [(50, 45), (61, 55), (45, 61)] {
            let mut all = ntt_primes(src_bits, 8, 3, Search::Below, &[]);
            all.extend(ntt_primes(dst_bits, 8, 4, Search::Alternate, &all));
            let moduli: Vec<Modulus> = all.iter().map(|&q| Modulus::new(q)).collect();
            let table = ConversionTable::new(&moduli, &[0, 1, 2], &[3, 4, 5, 6]);
            let mut s = 99u64;
            let input: Vec<u64> = (0..3 * n)
                .map(|k| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    s % all[k / n]
                })
                .collect();
            let cpu_conv = BasisConverter::new(&moduli[..3], &moduli[3..]);
            let mut cpu = vec![0u64; 4 * n];
            let mut scratch = vec![0u64; cpu_conv.scratch_len(n)];
            {
                let mut outs: Vec<&mut [MaybeUninit<u64>]> =
                    as_uninit(&mut cpu).chunks_exact_mut(n).collect();
                cpu_conv.convert(&input, &mut outs, &mut scratch, &|_, _| {});
            }
            assert_eq!(
                table.convert_model(&moduli, &input, n),
                cpu,
                "{src_bits} → {dst_bits} bits"
            );
        }
    }

    #[test]
    fn digits_partition_each_level() {
        // 7 limbs of Q in digits of α = 3: {0,1,2}, {3,4,5}, {6}; at level 3 the last is empty.
        let alpha = 3;
        assert_eq!(digit_range(alpha, 2, 6), 6..7);
        assert_eq!(digit_range(alpha, 1, 3), 3..4);
        assert!(digit_range(alpha, 2, 3).is_empty());
        assert_eq!(digits_at(alpha, 6), 3);
        assert_eq!(digits_at(alpha, 2), 1);
        for level in 0..7 {
            let covered: Vec<usize> = (0..digits_at(alpha, level))
                .flat_map(|d| digit_range(alpha, d, level))
                .collect();
            assert_eq!(covered, (0..=level).collect::<Vec<_>>(), "level {level}");
        }
        assert_eq!(ext_indices(7, 2, 2), vec![0, 1, 2, 7, 8]);
    }

    #[test]
    fn modup_targets_skip_the_digit_and_keep_special_primes() {
        let all = ntt_primes(40, 8, 9, Search::Below, &[]);
        let moduli: Vec<Modulus> = all.iter().map(|&q| Modulus::new(q)).collect();
        // L + 1 = 7 primes of Q, K = 2 special primes, α = 3, digit 1 at level 5.
        let (table, positions) = modup_table(&moduli, 7, 3, 1, 5).unwrap();
        assert_eq!(table.from, vec![3, 4, 5]);
        assert_eq!(table.to, vec![0, 1, 2, 7, 8]);
        assert_eq!(positions, vec![0, 1, 2, 6, 7]);
        assert!(modup_table(&moduli, 7, 3, 2, 5).is_none());
        let (p_inv, p_mod) = p_constants(&moduli, 7);
        for i in 0..7 {
            assert_eq!(moduli[i].mul(p_inv[i], p_mod[i]), 1);
        }
        let r = rescale_inverses(&moduli, 4);
        assert_eq!(r.len(), 4);
        assert_eq!(moduli[2].mul(r[2], moduli[2].reduce(all[4])), 1);
    }
}
