//! `cachemirc`: the Cachemir compiler CLI.
//!
//! Exit codes: 0 success, 1 a failure while running, 2 bad input or usage (including commands
//! that later issues implement).
//!
//! One module per subcommand or concept: [`args`] (the command line), [`model`] (`import` and
//! model loading), [`eval`], [`compile`] (the compile subcommand), [`tensor`] (tensor-level passes), [`plan`] (lowering and writing a
//! plan), [`levels`] (`--params` and the level pass's summary), [`summary`] (the plan summary
//! `compile` prints), [`report`] (`report` and `dot`) and [`error`] (exit codes).

mod args;
mod compile;
mod error;
mod eval;
mod levels;
mod model;
mod plan;
mod report;
mod summary;
mod tensor;

use anyhow::Result;
use args::{Cli, Command};
use clap::Parser;
use error::InputError;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
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

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Import {
            model,
            import,
            emit,
            output,
            weights_out,
        } => model::import(&model, &import, emit, output, weights_out),
        Command::Eval {
            model,
            inputs,
            out,
            expect,
            precision,
            import,
        } => eval::eval(&model, &inputs, &out, expect, precision, &import),
        Command::Compile(args) => compile::compile(*args),
        Command::Report {
            plan,
            json,
            cost_model,
            assume_level,
            cache_lengths,
            output,
        } => report::report(
            &plan,
            json,
            cost_model.as_deref(),
            assume_level,
            &cache_lengths,
            output.as_deref(),
        ),
        Command::Dot { plan, output } => report::dot(&plan, output.as_deref()),
    }
}
