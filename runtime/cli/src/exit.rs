//! Exit codes: 0 success, 1 runtime failure, 2 usage or input error. Errors that are the user's
//! input's fault are wrapped in [`InputError`]; everything else is a runtime failure.

use std::process::ExitCode;

/// An error that is the user's input's fault (exit code 2); anything else exits 1.
#[derive(Debug)]
pub struct InputError(anyhow::Error);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for InputError {}

/// Wraps `e` as an [`InputError`].
pub fn input_error(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(InputError(e.into()))
}

/// A `cpu` backend error as an input error (refused parameters, mismatched or malformed
/// files) or a runtime failure (a CKKS operation failing).
pub fn cpu_error(e: cachemir_vm::CpuError) -> anyhow::Error {
    if e.is_input_error() {
        input_error(e)
    } else {
        anyhow::Error::new(e)
    }
}

/// Prints `result`'s error (with its causes) and returns the exit code.
pub fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<InputError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
