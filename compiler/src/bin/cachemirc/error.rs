//! Exit codes: an [`InputError`] (the user's input's fault) exits with 2, anything else with 1.

/// An error that is the user's input's fault (exit code 2).
#[derive(Debug)]
pub(crate) struct InputError(anyhow::Error);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for InputError {}

pub(crate) fn input_error(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(InputError(e.into()))
}
