//! Galois automorphisms σ_g: a(X) ↦ a(X^g) for odd g modulo 2N.
//!
//! In the NTT domain σ_g is an index permutation (no arithmetic): with evaluations stored at
//! ψ^{e_i}, e_i = 2·bitrev(i) + 1, (σ_g a)(ψ^{e_i}) = a(ψ^{e_i·g}), i.e. out\[i\] = in\[π_g(i)\] with
//! π_g(i) = bitrev((e_i·g mod 2N − 1)/2). Slot rotation by k uses g = 5^k mod 2N (left rotation of
//! the slot vector), conjugation uses g = 2N − 1 (Cheon–Kim–Kim–Song, ASIACRYPT 2017, §4).

/// Bit reversal of the low `bits` bits.
#[inline]
fn bitrev(x: usize, bits: u32) -> usize {
    if bits == 0 {
        0
    } else {
        x.reverse_bits() >> (usize::BITS - bits)
    }
}

/// The NTT-domain permutation π_g for ring degree N = 2^log_n: out\[i\] = in\[perm\[i\]\].
pub fn ntt_permutation(log_n: u32, g: u64) -> Vec<u32> {
    let n = 1usize << log_n;
    let two_n_mask = (2 * n as u64) - 1;
    (0..n)
        .map(|i| {
            let e = 2 * bitrev(i, log_n) as u64 + 1;
            let eg = (e * (g & two_n_mask)) & two_n_mask;
            bitrev(((eg - 1) / 2) as usize, log_n) as u32
        })
        .collect()
}

/// Applies σ_g to one NTT-form limb: out\[i\] = input\[perm\[i\]\].
#[inline]
pub fn permute_ntt(input: &[u64], out: &mut [u64], perm: &[u32]) {
    for (o, &p) in out.iter_mut().zip(perm) {
        *o = input[p as usize];
    }
}

/// Applies σ_g to one coefficient-form limb modulo q: X^k ↦ ±X^{k·g mod N}.
pub fn apply_coeff(input: &[u64], out: &mut [u64], g: u64, q: u64) {
    let n = input.len();
    let two_n = 2 * n as u64;
    for (k, &c) in input.iter().enumerate() {
        let e = (k as u64 * g) % two_n;
        if e < n as u64 {
            out[e as usize] = c;
        } else {
            out[(e - n as u64) as usize] = if c == 0 { 0 } else { q - c };
        }
    }
}

/// Galois element of a left rotation by `step` slots: 5^(step mod N/2) mod 2N.
pub fn rotation_element(log_n: u32, step: i64) -> u64 {
    let half = 1i64 << (log_n - 1);
    let k = step.rem_euclid(half) as u64;
    let two_n = 2u64 << log_n;
    let mut r = 1u64;
    let mut b = 5u64;
    let mut e = k;
    while e > 0 {
        if e & 1 == 1 {
            r = r * b % two_n;
        }
        b = b * b % two_n;
        e >>= 1;
    }
    r
}

/// Galois element of complex conjugation, 2N − 1.
pub fn conjugation_element(log_n: u32) -> u64 {
    (2u64 << log_n) - 1
}

/// g^{-1} mod 2N (g odd).
pub fn inverse_element(log_n: u32, g: u64) -> u64 {
    let two_n = 2u64 << log_n;
    // The group (Z/2N)^* has exponent dividing N/2·2 = N; g^{N−1} = g^{-1}.
    let mut r = 1u64;
    let mut b = g % two_n;
    let mut e = (1u64 << log_n) - 1;
    while e > 0 {
        if e & 1 == 1 {
            r = r * b % two_n;
        }
        b = b * b % two_n;
        e >>= 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::ntt::NttTable;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// NTT round trip, and the NTT-domain permutation agrees with the coefficient automorphism.
        #[test]
        fn ntt_round_trip_and_automorphism(seed in any::<u64>(), k in -20i64..20, conj in any::<bool>()) {
            let log_n = 10;
            let n = 1 << log_n;
            let q = crate::params::primes::ntt_primes(50, 16, 1, crate::params::primes::Search::Below, &[])[0];
            let t = NttTable::new(n, q).unwrap();
            let mut s = seed | 1;
            let a: Vec<u64> = (0..n).map(|_| { s ^= s << 13; s ^= s >> 7; s ^= s << 17; s % q }).collect();
            let mut f = a.clone();
            t.forward(&mut f);
            let mut back = f.clone();
            t.inverse(&mut back);
            prop_assert_eq!(&back, &a);
            let g = if conj { conjugation_element(log_n) } else { rotation_element(log_n, k) };
            let mut coeff = vec![0; n];
            apply_coeff(&a, &mut coeff, g, q);
            t.forward(&mut coeff);
            let mut perm = vec![0; n];
            permute_ntt(&f, &mut perm, &ntt_permutation(log_n, g));
            prop_assert_eq!(perm, coeff);
            prop_assert_eq!(g * inverse_element(log_n, g) % (2 * n as u64), 1);
        }
    }
}
