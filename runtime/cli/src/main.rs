//! `cachemir`: the Cachemir runtime CLI (client and server sides of private inference).
//!
//! Client: `keygen` (secret key and the evaluation keys a plan lists), `encrypt`, `decrypt`
//! (noise-flooded); server: `run` (on ciphertexts with the `cpu` backend, or a case file in the
//! clear with `sim`); `generate` runs client and server in one process to generate text with a
//! generation plan; `demo` compiles the embedded tiny Llama and generates text with it encrypted
//! (the README's first command); `bench` measures the CKKS primitives on this machine. Exit codes: 0 success, 1 runtime failure, 2 usage or input error.

mod alloc_tuning;
mod bench;

use cachemir_cli::{decrypt, demo, encrypt, exit, generate, keygen, run};

use std::process::ExitCode;

use clap::{Parser, Subcommand};

const EXAMPLES: &str = "\
Examples:
  cachemir demo                                    # the embedded tiny Llama, encrypted at 128-bit
  cachemir demo --insecure-toy --tokens 4          # INSECURE toy parameters, for a quick look
  cachemir demo --work-dir demo/ --tokens 3        # keeps plan, keys and session; a rerun resumes
  cachemir bench                                   # N16Boot set, 1 thread, table
  cachemir bench --threads 2 --json > ours.json    # machine-readable medians
  cachemir bench --params ToyN13 --insecure        # toy sets need --insecure
  cachemir keygen model.plan -o keys/                        # client: secret.key (0600) + eval/
  cachemir encrypt keys/ model.plan case0.json -o in.ct      # client: inputs from a case file
  cachemir encrypt keys/ model.plan input_ids=ids.npy -o in.ct   # … or from .npy files
  cachemir run model.plan --keys keys/eval --input in.ct -o out.ct --threads 2   # server
  cachemir decrypt keys/ model.plan out.ct -o out/           # client: one .npy per output
  cachemir run model.plan --backend sim --inputs case0.json --out out/   # cleartext slots
  cachemir keygen toy.plan -o keys/ --insecure               # toy (insecure) sets need --insecure
  cachemir run gen.plan --keys keys/eval --input step0.ct -o out0.ct --session s/   # KV cache kept in s/
  cachemir generate gen.plan --keys keys/ --tokenizer tokenizer.json --prompt 'ROMEO:' --tokens 8
  cachemir generate gen.plan --backend sim --tokenizer tokenizer.json --prompt 'ROMEO:' --tokens 8 --json
  cachemir generate gen.plan --keys keys/ --tokenizer tokenizer.json --tokens 4 --session s/   # resume
  cachemir generate gen.plan --keys keys/ --tokenizer tokenizer.json --prompt 'ROMEO: But soft' --public-prefix 2 --tokens 4";

#[derive(Parser, Debug)]
#[command(name = "cachemir", version, about = "Cachemir runtime: private transformer inference under CKKS", after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Client: generate the secret key and the evaluation keys a plan needs.
    Keygen(keygen::KeygenArgs),
    /// Client: encrypt a plan's inputs (.npy files or a case file) into a ciphertext file.
    Encrypt(encrypt::EncryptArgs),
    /// Server: run a plan on a ciphertext file (`--backend sim`: on a case file in the clear).
    Run(run::RunCommand),
    /// Client: decrypt a ciphertext file's outputs into .npy files (noise-flooded).
    Decrypt(decrypt::DecryptArgs),
    /// Client and server in one process, generating text with a generation plan.
    Generate(generate::GenerateArgs),
    /// The embedded tiny Llama end to end: compile, report, keygen, encrypted generation.
    Demo(demo::DemoArgs),
    /// Time the CKKS primitives (medians) on this machine.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    alloc_tuning::tune();
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen(args) => exit::report(keygen::run(&args)),
        Command::Encrypt(args) => exit::report(encrypt::run(&args)),
        Command::Run(args) => exit::report(run::command(&args)),
        Command::Decrypt(args) => exit::report(decrypt::run(&args)),
        Command::Generate(args) => exit::report(generate::run(&args)),
        Command::Demo(args) => exit::report(demo::run(&args)),
        Command::Bench(args) => match bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
    }
}
