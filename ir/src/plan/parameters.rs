//! The CKKS parameters a leveled plan was compiled for, and the level and scale rules its
//! instructions obey.
//!
//! A plan from the lowering alone has no parameters (`Plan::parameters` is `None`): levels are
//! unbounded and the `sim` backend checks values only. The level pass (compiler, `levels`) fills
//! them in and makes every level and scale explicit in the instruction stream, so that an executor
//! checks, not infers:
//!
//! - every register has a **level** `l` (its ciphertext has `l + 1` RNS limbs) and a **scale
//!   degree** `d ∈ {1, 2}` (scale Δ^d with Δ = 2^`log_scale`; rescaling divides by a prime ≈ Δ);
//! - `load` gives the input's [`super::Ciphertexts::level`] and degree 1;
//! - `add`, `sub`, `mul` need equal levels and, for `add`/`sub`, equal degrees; `mul` needs degree
//!   1 on both sides and gives degree 2 (relinearized);
//! - `mul.p` and `mul.s` need degree 1 and give degree 2 (the plaintext or constant is encoded at
//!   Δ at the register's level); `add.p`, `sub.p`, `add.s` keep the level and degree (encoded at
//!   the register's scale); `neg`, `rot`, `rot.h` keep both;
//! - `rescale` needs degree 2 and level ≥ 1 and gives level − 1, degree 1;
//! - `level.down` to a level ≤ the register's keeps the degree;
//! - `boot` needs degree 1 and every slot in [−1, 1] (inputs are pre-scaled by the compiler using
//!   calibrated bounds) and gives [`Parameters::bootstrap_level`], degree 1;
//! - `store` needs the output's [`super::Ciphertexts::level`] and degree 1.
//!
//! The multiplicative depth between two bootstraps is therefore the number of `rescale`s on a
//! path, and the level of every register is known at compile time.

use serde::{Deserialize, Serialize};

/// Parameters of a leveled plan: what keys and ciphertexts must match, and what the `sim`
/// backend and the report need (no dependency on the CKKS crate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parameters {
    /// The named parameter set (`cachemir_ckks`), e.g. `N16BootFull`.
    pub name: String,
    /// log2 of the ring degree N (slots ≤ N/2).
    pub log_n: u32,
    /// Δ = 2^`log_scale`.
    pub log_scale: u32,
    /// Level of a fresh encryption: the top of the chain (`max_level + 1` limbs).
    pub max_level: u32,
    /// Level a bootstrap returns; `None` for sets without bootstrapping keys.
    pub bootstrap_level: Option<u32>,
    /// Special primes (α limbs of P) and the key-switching decomposition number.
    pub special_primes: u32,
    pub dnum: u32,
    /// An insecure set (tests only; the CLI refuses it without `--insecure`).
    pub toy: bool,
}

impl Parameters {
    /// Bytes of one ciphertext at `level` (two polynomials of `level + 1` limbs of 8 bytes).
    pub fn ciphertext_bytes(&self, level: u32) -> u64 {
        2 * (u64::from(level) + 1) * (1u64 << self.log_n) * 8
    }

    /// Bytes of one key-switching key (Galois or relinearization) usable down from `level`:
    /// `dnum` digits of two polynomials over `level + 1 + special_primes` limbs.
    pub fn switching_key_bytes(&self, level: u32) -> u64 {
        u64::from(self.dnum)
            * 2
            * (u64::from(level) + 1 + u64::from(self.special_primes))
            * (1u64 << self.log_n)
            * 8
    }
}

/// The named bootstrappable sets as a plan sees them (level structure and key shape), most
/// secure first; the CKKS crate (`cachemir_ckks::bootstrap::BootParamSet`) builds their primes
/// and checks their security.
pub fn named() -> Vec<Parameters> {
    vec![
        // 26 limbs: q_0, 9 application levels, 3 SlotsToCoeffs, 10 EvalMod, 3 CoeffsToSlots;
        // log2 QP = 1725 ≤ 1747 (128-bit, uniform ternary secret).
        Parameters {
            name: "N16BootFull".into(),
            log_n: 16,
            log_scale: 45,
            max_level: 25,
            bootstrap_level: Some(9),
            special_primes: 6,
            dnum: 5,
            toy: false,
        },
        // N16BootFull's level structure at N = 2^12 (26 limbs, 9 application levels after
        // bootstrapping). Insecure: tests only.
        Parameters {
            name: "ToyBootN12".into(),
            log_n: 12,
            log_scale: 45,
            max_level: 25,
            bootstrap_level: Some(9),
            special_primes: 6,
            dnum: 5,
            toy: true,
        },
    ]
}

/// A named set (case-insensitive).
pub fn by_name(name: &str) -> Option<Parameters> {
    named()
        .into_iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
}
