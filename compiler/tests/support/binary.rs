//! Running the `cachemirc` binary from the compiler's integration tests.

use std::process::{Command, Output};

/// `cachemirc ARGS…`, its status and output captured.
pub fn cachemirc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachemirc"))
        .args(args)
        .output()
        .expect("run cachemirc")
}

/// Captured output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
