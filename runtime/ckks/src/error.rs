//! Typed errors of the CKKS library.
//!
//! Every fallible public function returns [`Result<T>`]; bad inputs (mismatched levels, scales,
//! parameter sets, missing keys, malformed bytes) are reported here and never panic.

use thiserror::Error;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, CkksError>;

/// Everything that can go wrong in the CKKS library.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CkksError {
    /// A parameter set is malformed (bad ring degree, prime, dnum, ...).
    #[error("invalid parameters: {0}")]
    InvalidParameters(String),
    /// The parameter set does not meet 128-bit security (HE standard, ternary-secret table).
    #[error(
        "insecure parameters: log2(QP) = {log_qp:.1} bits exceeds the 128-bit bound of {bound} bits \
         for N = 2^{log_n} with a {secret} secret (HE standard); use a larger N or fewer/smaller primes"
    )]
    Insecure {
        /// log2 of the full key-switching modulus Q·P, in bits.
        log_qp: f64,
        /// The largest admissible log2(QP), in bits.
        bound: u32,
        /// log2 of the ring degree.
        log_n: u32,
        /// The secret distribution, in words.
        secret: String,
    },
    /// A key encrypted under a sparse secret (the ephemeral secret of bootstrapping's
    /// sparse-secret encapsulation) has a modulus above the sparse-secret bound
    /// ([`crate::params::security::max_log_q_sparse_key`]).
    #[error(
        "insecure sparse-secret key: log2(modulus) = {log_q:.1} bits exceeds the bound of {bound} \
         bits for N = 2^{log_n} with a Hamming-weight-{hamming_weight} secret"
    )]
    InsecureSparseKey {
        /// log2 of the key's modulus (q_0·P'), in bits.
        log_q: f64,
        /// The largest admissible log2 of the modulus, in bits.
        bound: u32,
        /// log2 of the ring degree.
        log_n: u32,
        /// Hamming weight of the sparse secret.
        hamming_weight: usize,
    },
    /// Two operands (or an operand and a key) come from different parameter sets.
    #[error(
        "parameter mismatch: object made under parameter id {found:016x}, context is {expected:016x}"
    )]
    ParamsMismatch {
        /// The context's parameter id (first 8 bytes of the parameter hash).
        expected: u64,
        /// The operand's parameter id.
        found: u64,
    },
    /// Two operands sit at different levels where equal levels are required.
    #[error("level mismatch: {0} vs {1} (use level_down first)")]
    LevelMismatch(usize, usize),
    /// Two operands have different scales where equal scales are required.
    #[error("scale mismatch: 2^{0:.4} vs 2^{1:.4}")]
    ScaleMismatch(f64, f64),
    /// The operation needs more levels than the operand has.
    #[error("level too low: the operation needs level >= {needed}, operand is at level {level}")]
    LevelTooLow {
        /// The minimum level needed.
        needed: usize,
        /// The operand's level.
        level: usize,
    },
    /// Requested level above the top of the modulus chain.
    #[error("level {level} out of range (max level {max})")]
    LevelOutOfRange {
        /// The level asked for.
        level: usize,
        /// The maximum level of the chain.
        max: usize,
    },
    /// A Galois key for the requested rotation / automorphism is missing.
    #[error("missing Galois key for element {galois_element} (rotation step {step:?})")]
    MissingGaloisKey {
        /// The Galois element g of X -> X^g.
        galois_element: u64,
        /// The rotation step, when the element is a rotation.
        step: Option<i64>,
    },
    /// A key was generated for a lower maximum level than the ciphertext it is used on.
    #[error("key generated up to level {key_level}, ciphertext is at level {level}")]
    KeyLevelTooLow {
        /// The key's maximum level.
        key_level: usize,
        /// The ciphertext's level.
        level: usize,
    },
    /// The ciphertext has the wrong number of polynomials for the operation.
    #[error("ciphertext has degree {0}, expected {1}")]
    CiphertextDegree(usize, usize),
    /// Slot counts differ or are not admissible.
    #[error("invalid slot count: {0}")]
    InvalidSlots(String),
    /// Input vector longer than the slot count, or a non-finite value.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A plaintext value does not fit the modulus at the requested scale.
    #[error("value overflow: {0}")]
    Overflow(String),
    /// Serialized bytes are malformed, of another version, or of another kind.
    #[error("deserialization failed: {0}")]
    Deserialize(String),
    /// Serialization failed.
    #[error("serialization failed: {0}")]
    Serialize(String),
    /// The OS entropy source failed.
    #[error("entropy source failed: {0}")]
    Entropy(String),
}
