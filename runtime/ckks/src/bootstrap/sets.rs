//! Bootstrappable parameter sets: the modulus chain is laid out, from the top, as CoeffsToSlots
//! levels, EvalMod levels, SlotsToCoeffs levels, then the levels left to the application, above
//! q_0. EvalMod and CoeffsToSlots primes are larger (50–55 bits) than the application scale
//! (45 bits): their rounding errors are amplified by q_0/(2π·Δ) ≈ 2^12 in SlotsToCoeffs.

use crate::error::Result;
use crate::params::{ChainSpec, CkksParameters, SecretDistribution};

/// Levels of the default [`super::BootstrapConfig`]: CoeffsToSlots, EvalMod (Chebyshev depth 6,
/// 2 double angles, arcsine 2) and SlotsToCoeffs.
const CTS_LEVELS: usize = 3;
const EVALMOD_LEVELS: usize = 10;
const STC_LEVELS: usize = 3;

/// Named bootstrappable sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BootParamSet {
    /// N = 2^12, INSECURE (tests only): the level structure of [`BootParamSet::N16BootFull`] in
    /// small, so a plan leveled for one runs on the other at 2^11 slots: q_0 60 bits; 9×45
    /// application levels; 3×45 StC; 10×60 EvalMod; 3×55 CtS (26 limbs, L = 25); P = 6×60
    /// bits; dnum 5; Δ = 2^45; uniform ternary main secret.
    ToyBootN12,
    /// N = 2^16, 128-bit (log2 QP = 1725 ≤ 1747): q_0 60 bits; 9×45 application levels; 3×45
    /// StC; 10×60 EvalMod; 3×55 CtS (26 limbs, L = 25); P = 6×60 bits; dnum 5; Δ = 2^45;
    /// uniform ternary main secret.
    N16BootFull,
}

impl BootParamSet {
    /// All sets.
    pub const ALL: [BootParamSet; 2] = [BootParamSet::ToyBootN12, BootParamSet::N16BootFull];

    /// The set's name.
    pub fn name(self) -> &'static str {
        match self {
            BootParamSet::ToyBootN12 => "ToyBootN12",
            BootParamSet::N16BootFull => "N16BootFull",
        }
    }

    /// Looks a set up by name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// Whether the set is insecure.
    pub fn is_toy(self) -> bool {
        self.name().starts_with("Toy")
    }

    /// Levels left to the application after bootstrapping with the default
    /// [`super::BootstrapConfig`] (3 CtS, 8 EvalMod, 3 StC levels).
    pub fn application_levels(self) -> usize {
        match self {
            BootParamSet::ToyBootN12 | BootParamSet::N16BootFull => 9,
        }
    }

    /// The parameters. Errors: [`crate::CkksError::InvalidParameters`] (not for these sets).
    pub fn params(self) -> Result<CkksParameters> {
        // (log N, application levels, EvalMod and CtS prime bits, special primes, dnum)
        let (log_n, app, evalmod_bits, cts_bits, special, dnum) = match self {
            BootParamSet::ToyBootN12 => (12, 9, 60, 55, vec![60; 6], 5),
            BootParamSet::N16BootFull => (16, 9, 60, 55, vec![60; 6], 5),
        };
        let mut level_bits = vec![45; app + STC_LEVELS];
        level_bits.extend(vec![evalmod_bits; EVALMOD_LEVELS]);
        level_bits.extend(vec![cts_bits; CTS_LEVELS]);
        let chain = ChainSpec {
            first_bits: 60,
            level_bits,
            special_bits: special,
        };
        CkksParameters::generate(
            self.name(),
            log_n,
            &chain,
            dnum,
            45,
            SecretDistribution::UniformTernary,
        )
    }
}
