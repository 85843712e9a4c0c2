//! The `cachemir` runtime CLI's commands as a library, so that end-to-end tests elsewhere in the
//! workspace (e.g. `cachemirc compile` → `cachemir run` in `compiler/tests/compile_plan.rs`) run
//! exactly the code the binary runs.
//!
//! Client side: [`keygen`], [`encrypt`], [`decrypt`]; server side: [`run`] (and [`server`], its
//! encrypted flow); both in one process: [`generate`], and [`demo`] (the README's first command:
//! compile the embedded tiny Llama, keygen, generate encrypted); shared: [`client`] (plans, client
//! program, encoding and decoding), [`states`] (KV-cache states in session directories),
//! [`exit`] (exit codes), [`progress`] (terminal progress).

pub mod client;
pub mod decrypt;
pub mod demo;
pub mod encrypt;
pub mod exit;
pub mod generate;
pub mod keygen;
pub mod progress;
pub mod run;
pub mod server;
pub mod states;
