//! Generation of NTT-friendly primes q ≡ 1 (mod 2N) and of their primitive 2N-th roots of unity.

use crate::ring::modulus::Modulus;

/// Deterministic Miller–Rabin primality test for 64-bit integers (the first 12 prime bases are a
/// proven witness set below 3.3·10^24).
pub fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    const BASES: [u64; 12] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
    for &p in &BASES {
        if n.is_multiple_of(p) {
            return n == p;
        }
    }
    if n >= (1 << 62) {
        // Out of the range our Modulus supports; never generated.
        return false;
    }
    let m = Modulus::new(n);
    let mut d = n - 1;
    let mut s = 0;
    while d.is_multiple_of(2) {
        d /= 2;
        s += 1;
    }
    'witness: for &a in &BASES {
        let mut x = m.pow(a, d);
        if x == 1 || x == n - 1 {
            continue;
        }
        for _ in 1..s {
            x = m.mul(x, x);
            if x == n - 1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
}

/// Direction of the search for a prime near 2^bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// Largest primes below 2^bits first.
    Below,
    /// Primes closest to 2^bits, alternating above and below, so that a chain of scaling primes
    /// keeps the product of consecutive primes close to 2^(2·bits) (stable scale after rescaling).
    Alternate,
}

/// Returns `count` distinct primes q ≡ 1 (mod 2N) of about `bits` bits (`log_n` = log2 N), none in
/// `exclude`. With [`Search::Below`] every prime is < 2^bits.
pub fn ntt_primes(
    bits: u32,
    log_n: u32,
    count: usize,
    search: Search,
    exclude: &[u64],
) -> Vec<u64> {
    let step = 1u64 << (log_n + 1);
    let center = 1u64 << bits;
    let mut out = Vec::with_capacity(count);
    let mut below = center + 1 - step; // ≡ 1 mod 2N, < 2^bits
    let mut above = center + 1;
    let mut take_above = matches!(search, Search::Alternate);
    while out.len() < count {
        let cand = if take_above {
            let c = above;
            above += step;
            c
        } else {
            let c = below;
            below -= step;
            c
        };
        if is_prime(cand) && !exclude.contains(&cand) && !out.contains(&cand) {
            out.push(cand);
            if search == Search::Alternate {
                take_above = !take_above;
            }
        }
    }
    out
}

/// A primitive 2N-th root of unity ψ mod q (q ≡ 1 mod 2N), the smallest one found from generator
/// candidates 2, 3, ...; `None` if q is not NTT-friendly for this N.
pub fn primitive_root_2n(q: u64, log_n: u32) -> Option<u64> {
    let two_n = 1u64 << (log_n + 1);
    if !(q - 1).is_multiple_of(two_n) {
        return None;
    }
    let m = Modulus::new(q);
    (2..1000u64).find_map(|g| {
        let psi = m.pow(g, (q - 1) / two_n);
        // ψ has order exactly 2N iff ψ^N = −1.
        (m.pow(psi, two_n / 2) == q - 1).then_some(psi)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes_are_ntt_friendly() {
        let ps = ntt_primes(45, 16, 6, Search::Alternate, &[]);
        for &p in &ps {
            assert!(is_prime(p));
            assert_eq!((p - 1) % (1 << 17), 0);
            assert!((p as f64).log2() > 44.9 && (p as f64).log2() < 45.1);
            let psi = primitive_root_2n(p, 16).unwrap();
            assert_eq!(Modulus::new(p).pow(psi, 1 << 17), 1);
        }
        let below = ntt_primes(50, 16, 8, Search::Below, &ps);
        assert!(below.iter().all(|&p| p < 1 << 50));
        assert!(!is_prime(561) && is_prime(65537) && !is_prime((1 << 61) + 1));
    }
}
