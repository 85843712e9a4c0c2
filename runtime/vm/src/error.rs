//! Errors of plan execution.

use cachemir_ir::plan::levels::LevelError;
use cachemir_ir::plan::{PlanError, TensorRef};

/// Errors while preparing or executing a plan. Errors of one instruction name its index, its
/// disassembly and its site (`plan.sites[plan.instruction_sites[k]].name`).
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A leveled plan breaks the level and scale rules (`cachemir_ir::plan::parameters`): found
    /// by [`cachemir_ir::plan::levels::trace`] when the VM is prepared, before any instruction
    /// runs. The message names the instruction, its disassembly and its site (`name (source)`);
    /// the [`LevelError`] is not also the error's `source()`, so that `{:#}` chains print it once.
    #[error("the plan breaks the level rules: {0}")]
    Levels(LevelError),
    /// A plaintext reads a tensor the caller did not provide; `instruction` is its first use.
    #[error(
        "plaintext {index} reads {tensor}, which was not provided (first used by instruction {instruction} `{disassembly}` ({site}))"
    )]
    MissingTensor {
        index: usize,
        tensor: TensorRef,
        instruction: usize,
        disassembly: String,
        site: String,
    },
    /// A weight given with another element count than `plan.weight_shapes` declares.
    #[error("{tensor}: {given} values given; the plan declares shape {shape:?}")]
    TensorSize {
        tensor: TensorRef,
        given: usize,
        shape: Vec<usize>,
    },
    /// A backend with another slot count than the plan.
    #[error("the plan has {plan} slots per ciphertext; the {backend} backend has {given}")]
    Slots {
        plan: usize,
        backend: &'static str,
        given: usize,
    },
    /// Not one entry per encrypted input of the plan.
    #[error("{given} encrypted inputs given; the plan has {expected}")]
    Inputs { given: usize, expected: usize },
    /// An input with another number of ciphertexts than its layout.
    #[error("input {name}: {given} ciphertexts given, the layout has {expected}")]
    InputParts {
        name: String,
        given: usize,
        expected: usize,
    },
    /// An input ciphertext the backend rejected (e.g. a slot vector of the wrong length).
    #[error("input {name} ciphertext {part}: {message}")]
    Input {
        name: String,
        part: usize,
        message: String,
    },
    /// An output ciphertext no instruction stored.
    #[error("output {name} ciphertext {part} is never stored by the plan")]
    OutputNotWritten { name: String, part: usize },
    /// An output ciphertext the backend could not decrypt.
    #[error("output {name} ciphertext {part}: {message}")]
    Output {
        name: String,
        part: usize,
        message: String,
    },
    /// An instruction failed (a backend error, or a register without a value).
    #[error("instruction {index} `{instruction}` ({site}): {message}")]
    Instruction {
        index: usize,
        instruction: String,
        site: String,
        message: String,
    },
    /// A bootstrap input of a leveled plan with an occupied slot outside [−1, 1] (or NaN): the
    /// bootstrapper would return garbage. Checked where the backend can read values (`sim`).
    #[error(
        "instruction {index} `{instruction}` ({site}): bootstrap input outside [-1, 1]: slot {slot} holds {value} (observed [{min}, {max}] over the {occupied} occupied slots)"
    )]
    BootstrapRange {
        index: usize,
        instruction: String,
        site: String,
        /// The first occupied slot out of range, and its value.
        slot: usize,
        value: f64,
        /// Observed minimum and maximum over the occupied slots (NaN when a slot is NaN).
        min: f64,
        max: f64,
        /// Slots `0..occupied` are occupied (the instruction's slot count).
        occupied: usize,
    },
}

impl From<LevelError> for VmError {
    fn from(e: LevelError) -> Self {
        VmError::Levels(e)
    }
}
