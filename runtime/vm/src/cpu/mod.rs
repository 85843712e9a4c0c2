//! The `cpu` backend: plans executed on RNS-CKKS ciphertexts (`cachemir-ckks`, parallel over RNS
//! limbs with rayon).
//!
//! - [`setup`]: a plan's [`Parameters`](cachemir_ir::plan::Parameters) resolved to a named
//!   bootstrappable set (toy sets only with [`Insecure::Allow`]), and the scale of each level;
//! - [`keys`]: what a plan needs of the keys ([`KeyRequirements`]), the client's secret key
//!   ([`ClientKeys`], never part of the server API) and the evaluation keys ([`EvaluationKeys`]:
//!   relinearization, Galois keys for exactly the plan's rotations at the highest level each is
//!   used at, bootstrapping keys per slot count), generated with progress and stored versioned
//!   with the parameter hash;
//! - [`backend`]: [`CpuBackend`], the [`Backend`](crate::Backend) over [`CpuCiphertext`]s, and a
//!   [`Client`](crate::Client) when built with the secret key;
//! - [`cache`]: the just-in-time plaintext encodings, kept in an LRU bounded by bytes;
//! - [`bundle`]: the ciphertext file ([`CiphertextBundle`]) that carries a plan's inputs,
//!   outputs or KV-cache states between client and server;
//! - [`envelope`]: the versioned container of every file above (kind, parameter set and hash).

pub mod backend;
pub mod bundle;
pub mod cache;
pub mod envelope;
pub mod keys;
pub mod setup;

pub use backend::{CpuBackend, CpuCiphertext, CpuOptions, CpuStats};
pub use bundle::{BundleEntry, CiphertextBundle, PublicTensor, Role};
pub use keys::{ClientKeys, EvaluationKeys, KeyProgress, KeyRequirements};
pub use setup::{CpuParameters, Insecure};

use cachemir_ckks::CkksError;
use cachemir_ir::plan::{ContentHash, PlanError};

/// Errors of the `cpu` backend's setup, keys and files.
#[derive(Debug, thiserror::Error)]
pub enum CpuError {
    /// The plan has no parameters (levels unbounded): only `sim` runs it.
    #[error(
        "the plan has no CKKS parameters (compile it with `cachemirc compile --params …`); only the sim backend runs unleveled plans"
    )]
    Unleveled,
    /// A parameter set name the CKKS crate does not know.
    #[error("unknown parameter set `{name}` (known: {})", known.join(", "))]
    UnknownSet {
        name: String,
        known: Vec<&'static str>,
    },
    /// A toy set without the explicit permission.
    #[error("parameter set {0} is insecure (tests only); pass --insecure to use it")]
    InsecureRefused(&'static str),
    /// The plan describes its named set differently from the CKKS crate.
    #[error(
        "the plan's parameters `{name}` have {field} = {plan}; the CKKS set of that name has {set}"
    )]
    ParameterMismatch {
        name: String,
        field: &'static str,
        plan: String,
        set: String,
    },
    /// Two artefacts made under different CKKS parameters.
    #[error("{0}")]
    ParametersHash(Box<ParametersMismatch>),
    /// Ciphertexts made for another plan (their layouts may differ).
    #[error("{what} was made for plan {found}; this plan is {expected}")]
    PlanHash {
        what: String,
        found: ContentHash,
        expected: ContentHash,
    },
    /// Evaluation keys that do not cover what the plan needs.
    #[error("the evaluation keys lack what the plan needs: {0}")]
    MissingKeys(String),
    /// A file that is not what it should be (magic, version, kind, corrupted content).
    #[error("{what}: {message}")]
    Format { what: String, message: String },
    /// An invalid plan (it does not validate or breaks the level rules).
    #[error("invalid plan: {0}")]
    Plan(String),
    /// A CKKS library error.
    #[error(transparent)]
    Ckks(#[from] CkksError),
    /// A file that cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Which artefact was made for which parameters, for [`CpuError::ParametersHash`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParametersMismatch {
    /// The artefact found (e.g. a key file's path).
    pub what: String,
    pub found_name: String,
    pub found: ContentHash,
    /// What it was meant for (e.g. "the plan").
    pub expected_what: String,
    pub expected_name: String,
    pub expected: ContentHash,
}

impl std::fmt::Display for ParametersMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} was made for parameters {} (hash {}); {} uses {} (hash {})",
            self.what,
            self.found_name,
            self.found,
            self.expected_what,
            self.expected_name,
            self.expected
        )
    }
}

impl From<ParametersMismatch> for CpuError {
    fn from(m: ParametersMismatch) -> Self {
        CpuError::ParametersHash(Box::new(m))
    }
}

impl From<PlanError> for CpuError {
    fn from(e: PlanError) -> Self {
        CpuError::Plan(e.to_string())
    }
}

impl CpuError {
    /// Whether the error is the caller's input's fault (a usage or input error: wrong or
    /// mismatched files, refused parameters) rather than a failure while working.
    pub fn is_input_error(&self) -> bool {
        !matches!(self, CpuError::Ckks(_))
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        CpuError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
