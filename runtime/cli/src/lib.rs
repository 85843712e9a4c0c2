//! The `cachemir` runtime CLI's commands as a library, so that end-to-end tests elsewhere in the
//! workspace (e.g. `cachemirc compile` → `cachemir run` in `compiler/tests/compile_plan.rs`) run
//! exactly the code the binary runs.

pub mod run;
