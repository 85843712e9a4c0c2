//! `cachemir`: the Cachemir runtime CLI (client and server sides of private inference).
//!
//! `bench` measures the CKKS primitives on this machine; `run --backend sim` executes a plan on
//! cleartext slots. The other subcommands arrive with the runtime issues and currently exit with
//! code 2. Exit codes: 0 success, 1 runtime failure, 2 usage or input error.

mod alloc_tuning;
mod bench;

use cachemir_cli::run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  cachemir bench                                   # N16Boot set, 1 thread, table
  cachemir bench --threads 2 --json > ours.json    # machine-readable medians
  cachemir bench --params ToyN13 --insecure        # toy sets need --insecure
  cachemir keygen model.plan -o keys/              # (issue 8)
  cachemir run model.plan --backend sim --inputs case0.json --out out/   # cleartext slots
  cachemir run model.plan --keys keys/eval --input input.ct -o out.ct   # (issue 8)";

#[derive(Parser, Debug)]
#[command(name = "cachemir", version, about = "Cachemir runtime: private transformer inference under CKKS", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Client: generate the secret key and the evaluation keys a plan needs.
    Keygen {
        /// Arguments (not yet implemented).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Client: encrypt an input tensor (.npy).
    Encrypt {
        /// Arguments (not yet implemented).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Server: run a plan (`--backend sim`: on cleartext slots, from a case file).
    Run(run::RunArgs),
    /// Client: decrypt an output (.npy).
    Decrypt {
        /// Arguments (not yet implemented).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Demo: client and server in one process, generating tokens.
    Generate {
        /// Arguments (not yet implemented).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Time the CKKS primitives (medians) on this machine.
    Bench(bench::BenchArgs),
}

fn not_yet(name: &str, issue: u32) -> ExitCode {
    eprintln!("error: `cachemir {name}` is not yet implemented (issue {issue})");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    alloc_tuning::tune();
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen { .. } => not_yet("keygen", 8),
        Command::Encrypt { .. } => not_yet("encrypt", 8),
        Command::Run(args) => match run::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                if e.downcast_ref::<run::InputError>().is_some() {
                    ExitCode::from(2)
                } else {
                    ExitCode::from(1)
                }
            }
        },
        Command::Decrypt { .. } => not_yet("decrypt", 8),
        Command::Generate { .. } => not_yet("generate", 9),
        Command::Bench(args) => match bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
