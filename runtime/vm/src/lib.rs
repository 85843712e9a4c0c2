//! Cachemir plan VM: executes plans on a backend.
//!
//! - [`Backend`]: the CKKS instruction set over an opaque ciphertext handle; [`Client`] adds
//!   encryption and decryption for backends that can (tests, `sim`).
//! - [`Vm`]: executes a [`Plan`](cachemir_ir::plan::Plan) on any backend, building plaintext slot
//!   vectors lazily from the weights and freeing registers at their last use; for leveled plans it
//!   checks the level rules before any work and bootstrap inputs at run time; errors name the
//!   instruction, its disassembly and its site.
//! - [`sim`]: cleartext slot vectors with depth, level and scale bookkeeping and the plan's range
//!   checks (the fast way to test the compiler); [`sim::execute`] runs a plan on slot vectors.
//! - [`cpu`]: the CKKS backend on the CPU ([`CpuBackend`]), its keys ([`ClientKeys`],
//!   [`EvaluationKeys`]) and ciphertext files ([`CiphertextBundle`]).
//! - [`session`]: the encrypted KV cache of a generation in a directory, one atomic step at a time.
//! - [`generation`]: token-by-token generation with a generation plan ([`Generator`]).

pub mod backend;
pub mod cpu;
pub mod error;
pub mod generation;
pub mod report;
pub mod session;
pub mod sim;
pub mod vm;

pub use backend::{Backend, BackendError, CiphertextInfo, Client, PlainSlots};
pub use cpu::{
    CiphertextBundle, ClientKeys, CpuBackend, CpuCiphertext, CpuError, CpuOptions, CpuParameters,
    EvaluationKeys, Insecure, KeyRequirements,
};
pub use error::VmError;
pub use generation::{GenerationRunError, Generator, StepOutput};
pub use report::{OutputInfo, RangeViolation, Report};
pub use session::{Session, SessionError, SessionIdentity};
pub use sim::{SimBackend, SimCiphertext};
pub use vm::{Execution, Vm, VmOptions, run_cleartext};
