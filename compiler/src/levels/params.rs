//! Named bootstrappable parameter sets as the compiler sees them (level structure and key shape);
//! the CKKS crate (`cachemir_ckks::bootstrap::BootParamSet`) builds the primes and checks their
//! security, and a test keeps the two in step.

use cachemir_ir::plan::Parameters;

/// The named sets, most secure first.
pub fn named() -> Vec<Parameters> {
    vec![
        // 26 limbs: q_0, 9 application levels, 3 SlotsToCoeffs, 10 EvalMod, 3 CoeffsToSlots;
        // log2 QP ≈ 1651 ≤ 1747 (128-bit, uniform ternary secret).
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
        // 20 limbs, 3 application levels after bootstrapping. Insecure: tests only.
        Parameters {
            name: "ToyBootN12".into(),
            log_n: 12,
            log_scale: 45,
            max_level: 19,
            bootstrap_level: Some(3),
            special_primes: 5,
            dnum: 4,
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
