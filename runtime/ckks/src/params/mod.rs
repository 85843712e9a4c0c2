//! CKKS parameter sets: ring degree, RNS modulus chain, special primes, key-switching digits,
//! scale, secret and error distributions; named sets; the 128-bit security check.
//!
//! Conventions: a ciphertext at *level* ℓ lives modulo Q_ℓ = q_0·…·q_ℓ (ℓ + 1 RNS limbs); the top
//! level is L = `q.len() − 1`. Hybrid key switching (Han–Ki, CT-RSA 2020, §3) splits the chain into
//! `dnum` digits of α = ⌈(L+1)/dnum⌉ consecutive limbs and uses the special modulus P = Πp_k.

pub mod primes;
pub mod security;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{CkksError, Result};
use primes::{Search, ntt_primes};

/// Distribution of the secret key's coefficients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SecretDistribution {
    /// Each coefficient uniform in {−1, 0, 1}.
    UniformTernary,
    /// Exactly `hamming_weight` nonzero coefficients, each ±1.
    SparseTernary {
        /// Number of nonzero coefficients h.
        hamming_weight: usize,
    },
}

impl std::fmt::Display for SecretDistribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretDistribution::UniformTernary => write!(f, "uniform ternary"),
            SecretDistribution::SparseTernary { hamming_weight } => {
                write!(f, "sparse ternary (h = {hamming_weight})")
            }
        }
    }
}

/// A complete CKKS parameter set. Build with [`CkksParameters::generate`] or [`ParamSet::params`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CkksParameters {
    /// Human-readable name (not part of the parameter hash).
    pub name: String,
    /// log2 of the ring degree N (10 … 17).
    pub log_n: u32,
    /// The modulus chain q_0 … q_L (q_0 is the base prime; q_ℓ is dropped by the ℓ-th rescale).
    pub q: Vec<u64>,
    /// Special primes p_0 … p_{K−1} for hybrid key switching.
    pub p: Vec<u64>,
    /// Number of key-switching digits (dnum).
    pub dnum: usize,
    /// Default scale Δ = 2^log_scale used by encoders and constants.
    pub log_scale: u32,
    /// Secret distribution.
    pub secret: SecretDistribution,
    /// Standard deviation of the discrete Gaussian error (3.2).
    pub sigma: f64,
}

/// Bit sizes of a modulus chain, for [`CkksParameters::generate`].
#[derive(Debug, Clone)]
pub struct ChainSpec {
    /// Bits of q_0 (prime below 2^bits).
    pub first_bits: u32,
    /// Bits of q_1 … q_L, one entry per level (the scale per level); primes alternate around
    /// 2^bits so that the scale stays close to 2^bits after each rescale.
    pub level_bits: Vec<u32>,
    /// Bits of each special prime (primes below 2^bits).
    pub special_bits: Vec<u32>,
}

impl CkksParameters {
    /// Generates the primes of a chain (deterministically: the same spec gives the same primes) and
    /// validates the result. Errors: [`CkksError::InvalidParameters`].
    pub fn generate(
        name: &str,
        log_n: u32,
        chain: &ChainSpec,
        dnum: usize,
        log_scale: u32,
        secret: SecretDistribution,
    ) -> Result<Self> {
        if !(10..=17).contains(&log_n) {
            return Err(CkksError::InvalidParameters(format!(
                "log_n = {log_n} outside 10..=17"
            )));
        }
        let mut all: Vec<u64> = Vec::new();
        let mut q = ntt_primes(chain.first_bits, log_n, 1, Search::Below, &all);
        all.extend(&q);
        // Group the level primes by bit size; each group alternates around 2^bits.
        let mut level_q = vec![0u64; chain.level_bits.len()];
        let mut sizes: Vec<u32> = chain.level_bits.clone();
        sizes.sort_unstable();
        sizes.dedup();
        for bits in sizes {
            let idx: Vec<usize> = (0..chain.level_bits.len())
                .filter(|&i| chain.level_bits[i] == bits)
                .collect();
            let ps = ntt_primes(bits, log_n, idx.len(), Search::Alternate, &all);
            all.extend(&ps);
            for (i, p) in idx.into_iter().zip(ps) {
                level_q[i] = p;
            }
        }
        q.extend(level_q);
        let mut p = Vec::new();
        let mut sizes: Vec<u32> = chain.special_bits.clone();
        sizes.sort_unstable();
        sizes.dedup();
        for bits in sizes.into_iter().rev() {
            let count = chain.special_bits.iter().filter(|&&b| b == bits).count();
            let ps = ntt_primes(bits, log_n, count, Search::Below, &all);
            all.extend(&ps);
            p.extend(ps);
        }
        let params = CkksParameters {
            name: name.to_string(),
            log_n,
            q,
            p,
            dnum,
            log_scale,
            secret,
            sigma: 3.2,
        };
        params.validate()?;
        Ok(params)
    }

    /// Checks structural validity: N range, primes prime, NTT-friendly, distinct and < 2^61, dnum,
    /// special primes present, secret and σ sane. Errors: [`CkksError::InvalidParameters`].
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(CkksError::InvalidParameters(m));
        if !(10..=17).contains(&self.log_n) {
            return bad(format!("log_n = {} outside 10..=17", self.log_n));
        }
        if self.q.is_empty() || self.p.is_empty() {
            return bad("need at least one q prime and one special prime".into());
        }
        if self.dnum == 0 || self.dnum > self.q.len() {
            return bad(format!("dnum = {} outside 1..={}", self.dnum, self.q.len()));
        }
        let two_n = 2u64 << self.log_n;
        let mut seen = std::collections::HashSet::new();
        for &m in self.q.iter().chain(&self.p) {
            if m >= 1 << 61 || !primes::is_prime(m) || m % two_n != 1 {
                return bad(format!("modulus {m} is not a prime ≡ 1 mod 2N below 2^61"));
            }
            if !seen.insert(m) {
                return bad(format!("modulus {m} appears twice"));
            }
        }
        if self.alpha() > 16 || self.p.len() > 16 {
            return bad("at most 16 limbs per digit and 16 special primes (lazy reduction)".into());
        }
        if let SecretDistribution::SparseTernary { hamming_weight } = self.secret
            && (hamming_weight == 0 || hamming_weight > self.n())
        {
            return bad(format!("Hamming weight {hamming_weight} outside 1..=N"));
        }
        if !(self.sigma > 0.0 && self.sigma < 1e3) {
            return bad(format!("sigma = {} out of range", self.sigma));
        }
        if !(1..=60).contains(&self.log_scale) {
            return bad(format!("log_scale = {} outside 1..=60", self.log_scale));
        }
        Ok(())
    }

    /// Ring degree N.
    pub fn n(&self) -> usize {
        1 << self.log_n
    }
    /// Maximum number of complex slots, N/2.
    pub fn max_slots(&self) -> usize {
        self.n() / 2
    }
    /// Top level L (number of q limbs − 1).
    pub fn max_level(&self) -> usize {
        self.q.len() - 1
    }
    /// Limbs per key-switching digit, α = ⌈(L+1)/dnum⌉.
    pub fn alpha(&self) -> usize {
        self.q.len().div_ceil(self.dnum)
    }
    /// Default scale Δ = 2^log_scale.
    pub fn default_scale(&self) -> f64 {
        (self.log_scale as f64).exp2()
    }
    /// log2(Q_L), bits.
    pub fn log_q(&self) -> f64 {
        self.q.iter().map(|&q| (q as f64).log2()).sum()
    }
    /// log2(P), bits.
    pub fn log_p(&self) -> f64 {
        self.p.iter().map(|&p| (p as f64).log2()).sum()
    }
    /// log2(Q_L · P), bits: the quantity bounded by the security check.
    pub fn log_qp(&self) -> f64 {
        self.log_q() + self.log_p()
    }
    /// The 128-bit bound on log2(QP) for this N and secret, bits.
    pub fn security_bound(&self) -> Result<u32> {
        security::max_log_qp(self.log_n, self.secret)
    }
    /// Checks 128-bit security ([`CkksError::Insecure`] with log2(QP) and the bound otherwise).
    pub fn check_security(&self) -> Result<()> {
        security::check_128(self)
    }

    /// SHA-256 over the mathematical content (everything but the name), used in serialized headers.
    pub fn hash(&self) -> [u8; 32] {
        let content = (
            self.log_n,
            &self.q,
            &self.p,
            self.dnum,
            self.log_scale,
            self.secret,
            self.sigma.to_bits(),
        );
        let bytes = postcard::to_allocvec(&content).unwrap_or_default();
        let mut h = Sha256::new();
        h.update(b"cachemir-ckks-params-v1");
        h.update(&bytes);
        h.finalize().into()
    }

    /// First 8 bytes of [`Self::hash`], carried by in-memory objects to catch mixing of sets.
    pub fn id(&self) -> u64 {
        let h = self.hash();
        u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
    }
}

/// Named parameter sets. `Toy…` sets are insecure (for tests only); the others pass the 128-bit
/// check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParamSet {
    /// N = 2^12; q: 55 + 6×40 bits (7 limbs); P: 2×55 bits; dnum 4; Δ = 2^40. Insecure.
    ToyN12,
    /// N = 2^13; q: 60 + 12×45 bits (13 limbs); P: 5×50 bits; dnum 3; Δ = 2^45. Insecure; the
    /// shape of [`ParamSet::N16Boot`] in small.
    ToyN13,
    /// N = 2^16, bootstrappable: q: 60 + 22×45 bits (23 limbs, the OpenFHE peer's limb count);
    /// P: 8×50 bits; dnum 3; Δ = 2^45; uniform ternary secret; log2 QP ≈ 1450 ≤ 1747.
    N16Boot,
    /// N = 2^17: q: 60 + 34×45 bits (35 limbs); P: 9×50 bits; dnum 4; Δ = 2^45; uniform
    /// ternary; log2 QP ≈ 2040 ≤ 3523.
    N17Boot,
}

impl ParamSet {
    /// All named sets.
    pub const ALL: [ParamSet; 4] = [
        ParamSet::ToyN12,
        ParamSet::ToyN13,
        ParamSet::N16Boot,
        ParamSet::N17Boot,
    ];

    /// The set's name as accepted by [`ParamSet::from_name`].
    pub fn name(self) -> &'static str {
        match self {
            ParamSet::ToyN12 => "ToyN12",
            ParamSet::ToyN13 => "ToyN13",
            ParamSet::N16Boot => "N16Boot",
            ParamSet::N17Boot => "N17Boot",
        }
    }

    /// Looks a set up by name (case-insensitive).
    pub fn from_name(name: &str) -> Option<ParamSet> {
        ParamSet::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Whether the set is a toy (insecure) set.
    pub fn is_toy(self) -> bool {
        self.name().starts_with("Toy")
    }

    /// Builds the parameters (prime generation takes a few milliseconds).
    pub fn params(self) -> CkksParameters {
        let (log_n, first, level, count, special, k, dnum, log_scale) = match self {
            ParamSet::ToyN12 => (12, 55, 40, 6, 55, 2, 4, 40),
            ParamSet::ToyN13 => (13, 60, 45, 12, 50, 5, 3, 45),
            ParamSet::N16Boot => (16, 60, 45, 22, 50, 8, 3, 45),
            ParamSet::N17Boot => (17, 60, 45, 34, 50, 9, 4, 45),
        };
        let chain = ChainSpec {
            first_bits: first,
            level_bits: vec![level; count],
            special_bits: vec![special; k],
        };
        CkksParameters::generate(
            self.name(),
            log_n,
            &chain,
            dnum,
            log_scale,
            SecretDistribution::UniformTernary,
        )
        .unwrap_or_else(|e| unreachable!("named set {} is valid: {e}", self.name()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_sets_and_security() {
        let p = ParamSet::N16Boot.params();
        assert_eq!((p.q.len(), p.p.len(), p.dnum, p.alpha()), (23, 8, 3, 8));
        assert!(p.p.iter().all(|&x| x < 1 << 50));
        assert!(p.log_qp() < 1747.0);
        p.check_security().unwrap();
        ParamSet::N17Boot.params().check_security().unwrap();
        let toy = ParamSet::ToyN12.params();
        match toy.check_security() {
            Err(CkksError::Insecure { bound, .. }) => assert_eq!(bound, 109),
            other => panic!("expected Insecure, got {other:?}"),
        }
        assert_ne!(toy.hash(), p.hash());
        assert_eq!(ParamSet::from_name("n16boot"), Some(ParamSet::N16Boot));
    }

    /// Prints every named set (`-- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn describe_named_sets() {
        for set in ParamSet::ALL {
            let p = set.params();
            let bits = |v: &[u64]| {
                v.iter()
                    .map(|&x| format!("{:.2}", (x as f64).log2()))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            eprintln!(
                "{}: N=2^{} q=[{}] p=[{}] dnum={} alpha={} scale=2^{} logQ={:.1} logP={:.1} logQP={:.1} bound={:?}",
                p.name,
                p.log_n,
                bits(&p.q),
                bits(&p.p),
                p.dnum,
                p.alpha(),
                p.log_scale,
                p.log_q(),
                p.log_p(),
                p.log_qp(),
                p.security_bound()
            );
        }
    }
}
