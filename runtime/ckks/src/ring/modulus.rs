//! Word-size prime moduli: Barrett reduction of 128-bit values, Shoup multiplication by
//! precomputed constants, modular exponentiation and inversion.
//!
//! All moduli are odd primes below 2^62, so a sum of up to 16 products of reduced operands fits in
//! a `u128` before one Barrett reduction (lazy reduction).

/// A prime modulus q < 2^62 with its Barrett constant ⌊2^128 / q⌋.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Modulus {
    q: u64,
    /// ⌊2^128 / q⌋ split into (high, low) words.
    ratio: (u64, u64),
}

#[inline(always)]
fn mul_hi(a: u64, b: u64) -> u64 {
    ((a as u128 * b as u128) >> 64) as u64
}

impl Modulus {
    /// Builds the modulus; `q` must be odd, > 2 and < 2^62 (checked by the parameter layer).
    pub fn new(q: u64) -> Self {
        debug_assert!(q > 2 && q < (1 << 62));
        // 2^128 / q = (2^128 - 1) / q unless q | 2^128, impossible for odd q > 1.
        let r = u128::MAX / q as u128;
        Modulus {
            q,
            ratio: ((r >> 64) as u64, r as u64),
        }
    }

    /// The modulus value.
    #[inline(always)]
    pub fn value(&self) -> u64 {
        self.q
    }

    /// Barrett reduction of a 128-bit value into [0, q).
    #[inline(always)]
    pub fn reduce_u128(&self, x: u128) -> u64 {
        let x0 = x as u64;
        let x1 = (x >> 64) as u64;
        let (r1, r0) = self.ratio;
        // Estimate ⌊x · r / 2^128⌋ from the partial products (the lowest one only through its carry).
        let c0 = mul_hi(x0, r0);
        let p01 = x0 as u128 * r1 as u128;
        let p10 = x1 as u128 * r0 as u128;
        let mid = c0 as u128 + (p01 as u64) as u128 + (p10 as u64) as u128;
        let hi = (p01 >> 64) + (p10 >> 64) + (mid >> 64) + x1 as u128 * r1 as u128;
        let est = hi as u64;
        let mut r = x0.wrapping_sub(est.wrapping_mul(self.q));
        // The estimate is at most 2 below the true quotient.
        if r >= self.q {
            r -= self.q;
        }
        if r >= self.q {
            r -= self.q;
        }
        r
    }

    /// Reduces a 64-bit value into [0, q).
    #[inline(always)]
    pub fn reduce(&self, x: u64) -> u64 {
        if x < self.q {
            x
        } else {
            self.reduce_u128(x as u128)
        }
    }

    /// Reduces a signed 64-bit value into [0, q).
    #[inline(always)]
    pub fn reduce_i64(&self, x: i64) -> u64 {
        if x >= 0 {
            self.reduce(x as u64)
        } else {
            let r = self.reduce(x.unsigned_abs());
            if r == 0 { 0 } else { self.q - r }
        }
    }

    /// Reduces a signed 128-bit value into [0, q).
    #[inline]
    pub fn reduce_i128(&self, x: i128) -> u64 {
        let r = self.reduce_u128(x.unsigned_abs());
        if x >= 0 || r == 0 { r } else { self.q - r }
    }

    /// a + b mod q for reduced inputs.
    #[inline(always)]
    pub fn add(&self, a: u64, b: u64) -> u64 {
        let s = a + b;
        if s >= self.q { s - self.q } else { s }
    }

    /// a - b mod q for reduced inputs.
    #[inline(always)]
    pub fn sub(&self, a: u64, b: u64) -> u64 {
        if a >= b { a - b } else { a + self.q - b }
    }

    /// -a mod q for a reduced input.
    #[inline(always)]
    pub fn neg(&self, a: u64) -> u64 {
        if a == 0 { 0 } else { self.q - a }
    }

    /// a · b mod q for reduced inputs.
    #[inline(always)]
    pub fn mul(&self, a: u64, b: u64) -> u64 {
        self.reduce_u128(a as u128 * b as u128)
    }

    /// Shoup precomputation ⌊w · 2^64 / q⌋ for a fixed multiplier w < q.
    #[inline]
    pub fn shoup(&self, w: u64) -> u64 {
        (((w as u128) << 64) / self.q as u128) as u64
    }

    /// a · w mod q with w's Shoup constant `w_shoup` (Shoup, "NTL: a library for number theory").
    #[inline(always)]
    pub fn mul_shoup(&self, a: u64, w: u64, w_shoup: u64) -> u64 {
        let qt = mul_hi(a, w_shoup);
        let r = a.wrapping_mul(w).wrapping_sub(qt.wrapping_mul(self.q));
        if r >= self.q { r - self.q } else { r }
    }

    /// a^e mod q.
    pub fn pow(&self, mut a: u64, mut e: u64) -> u64 {
        let mut r = 1 % self.q;
        a = self.reduce(a);
        while e > 0 {
            if e & 1 == 1 {
                r = self.mul(r, a);
            }
            a = self.mul(a, a);
            e >>= 1;
        }
        r
    }

    /// a^{-1} mod q (q prime, a ≢ 0).
    pub fn inv(&self, a: u64) -> u64 {
        self.pow(a, self.q - 2)
    }

    /// The centered representative of a reduced value, in (−q/2, q/2].
    #[inline(always)]
    pub fn center(&self, a: u64) -> i64 {
        if a > self.q / 2 {
            a as i64 - self.q as i64
        } else {
            a as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn barrett_matches_u128_rem(x in any::<u128>(), qi in 0usize..3) {
            let qs = [(1u64 << 61) - 1, 1125899906826241, 65537];
            let m = Modulus::new(qs[qi]);
            prop_assert_eq!(m.reduce_u128(x) as u128, x % qs[qi] as u128);
        }

        #[test]
        fn shoup_matches_mul(a in any::<u64>(), w in any::<u64>()) {
            let m = Modulus::new(1125899906826241);
            let (a, w) = (a % m.value(), w % m.value());
            prop_assert_eq!(m.mul_shoup(a, w, m.shoup(w)), m.mul(a, w));
        }
    }
}
