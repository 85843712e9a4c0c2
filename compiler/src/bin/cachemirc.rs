//! `cachemirc`: the Cachemir compiler CLI.
//!
//! Exit codes: 0 success, 1 a failure while running, 2 bad input or usage (including commands
//! that later issues implement).

use anyhow::{Context, Result, bail};
use cachemir_compiler::reference::{Case, compare, output_file_name, run_case};
use cachemir_ir::npy::{read_npy, write_npy};
use cachemir_ir::printer::print_graph;
use cachemir_ir::{Graph, Precision};
use cachemir_onnx::{ImportOptions, Imported, import_file};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cachemirc",
    version,
    about = "Compile transformer models into CKKS (FHE) plans",
    after_help = "Examples:\n  \
        cachemirc import minilm.onnx --dim batch=1 --dim sequence=16\n  \
        cachemirc import model.onnx --dim batch=1 --dim sequence=16 --outputs /encoder/layer.0/output/LayerNorm/LayerNormalization_output_0 --emit ir\n  \
        cachemirc eval tiny_llama_decode_step_p15_ts17.onnx --inputs models/tiny_llama_decode_step_p15_ts17/case0.json --out out/ --expect"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Import a model (ONNX, or a Cachemir `.cmr` model file) and print its Tensor IR summary,
    /// the IR itself, or the model as Cachemir model text plus its weights.
    Import {
        /// The `.onnx` or `.cmr` file.
        model: PathBuf,
        #[command(flatten)]
        import: ImportArgs,
        /// What to print: the summary, the IR as text, the IR as JSON (with weights), or Cachemir
        /// model text (with `--weights-out`).
        #[arg(long, value_enum, default_value_t = Emit::Summary)]
        emit: Emit,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// With `--emit dsl`: where to write the weights (safetensors). Default: the output
        /// file with the extension `.safetensors`.
        #[arg(long)]
        weights_out: Option<PathBuf>,
    },
    /// Run the reference interpreter on the inputs a case file lists and write each output as `.npy`.
    Eval {
        /// The `.onnx` or `.cmr` file.
        model: PathBuf,
        /// A case file (`caseN.json`: inputs and expected outputs as `.npy`).
        #[arg(long)]
        inputs: PathBuf,
        /// Folder to write `<output name>.npy` files to (`.` and `/` replaced by `_`).
        #[arg(long)]
        out: PathBuf,
        /// Compare with the expected outputs the case file lists.
        #[arg(long)]
        expect: bool,
        /// Float precision of the interpreter.
        #[arg(long, value_enum, default_value_t = PrecisionArg::F64)]
        precision: PrecisionArg,
        #[command(flatten)]
        import: ImportArgs,
    },
    /// Compile a model into an FHE plan (issues 6–8).
    Compile {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a plan's depth / level / bootstrap / key / memory / latency report (issue 8).
    Report {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print a plan as a Graphviz graph (issue 8).
    Dot {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args)]
struct ImportArgs {
    /// Bind a symbolic dimension: `--dim sequence=16` (repeatable).
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim)]
    dims: Vec<(String, usize)>,
    /// Keep only what these values need (comma-separated tensor names).
    #[arg(long, value_delimiter = ',')]
    outputs: Option<Vec<String>>,
    /// Make these values graph inputs, cutting off what computes them (comma-separated); with
    /// `--outputs` this extracts e.g. one encoder layer.
    #[arg(long, value_delimiter = ',')]
    inputs_at: Vec<String>,
    /// Inputs to encrypt (comma-separated); default: float inputs are encrypted, integer inputs public.
    #[arg(long, value_delimiter = ',')]
    encrypted: Option<Vec<String>>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    Summary,
    Ir,
    Json,
    Dsl,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    F32,
    F64,
}

fn parse_dim(text: &str) -> Result<(String, usize), String> {
    let (name, size) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=SIZE"))?;
    let size = size
        .parse()
        .map_err(|_| format!("`{text}`: `{size}` is not a size"))?;
    Ok((name.to_string(), size))
}

/// An error that is the user's input's fault (exit code 2).
#[derive(Debug)]
struct InputError(anyhow::Error);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for InputError {}

fn input_error(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(InputError(e.into()))
}

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
        } => {
            let loaded = load_model(&model, &import, HashMap::new())?;
            let text = match emit {
                Emit::Summary => loaded.summary,
                Emit::Ir => print_graph(&loaded.graph),
                Emit::Json => serde_json::to_string(&loaded.graph)?,
                Emit::Dsl => emit_dsl(&loaded.graph, output.as_deref(), weights_out)?,
            };
            match output {
                Some(path) => std::fs::write(&path, text)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Eval {
            model,
            inputs,
            out,
            expect,
            precision,
            import,
        } => eval(&model, &inputs, &out, expect, precision, &import),
        Command::Compile { .. } => not_yet("compile", "6-8"),
        Command::Report { .. } => not_yet("report", "8"),
        Command::Dot { .. } => not_yet("dot", "8"),
    }
}

fn not_yet(command: &str, issue: &str) -> Result<()> {
    Err(input_error(anyhow::anyhow!(
        "`cachemirc {command}` is not yet implemented (issue {issue})"
    )))
}

/// A loaded model and its summary text.
struct Loaded {
    graph: Graph,
    summary: String,
}

/// Loads an ONNX file, or a Cachemir model file (`.cmr`), into Tensor IR.
fn load_model(
    model: &Path,
    args: &ImportArgs,
    input_shapes: HashMap<String, Vec<usize>>,
) -> Result<Loaded> {
    if model.extension().is_some_and(|e| e == "cmr") {
        if !args.dims.is_empty()
            || args.outputs.is_some()
            || !args.inputs_at.is_empty()
            || args.encrypted.is_some()
        {
            return Err(input_error(anyhow::anyhow!(
                "--dim, --outputs, --inputs-at and --encrypted apply to ONNX files; a model file states them itself"
            )));
        }
        let graph = cachemir_dsl::load_file(model, &cachemir_dsl::LoadOptions::default())
            .map_err(|e| input_error(anyhow::anyhow!("{e}")))?;
        let summary = format!(
            "model {}
{}",
            graph.name,
            cachemir_ir::printer::summary(&graph)
        );
        return Ok(Loaded { graph, summary });
    }
    let imported = import_model(model, args, input_shapes)?;
    Ok(Loaded {
        summary: imported.summary_text(),
        graph: imported.graph,
    })
}

/// Prints `graph` as model text and writes its weights; returns the text.
fn emit_dsl(graph: &Graph, output: Option<&Path>, weights_out: Option<PathBuf>) -> Result<String> {
    let weights_path = match (weights_out, output) {
        (Some(path), _) => path,
        (None, Some(out)) => out.with_extension("safetensors"),
        (None, None) => {
            return Err(input_error(anyhow::anyhow!(
                "--emit dsl needs -o FILE.cmr or --weights-out FILE.safetensors"
            )));
        }
    };
    // The model file names its weights relative to itself.
    let relative = match output.and_then(Path::parent) {
        Some(dir) => weights_path
            .strip_prefix(dir)
            .unwrap_or(&weights_path)
            .to_path_buf(),
        None => weights_path.clone(),
    };
    let printed = cachemir_dsl::print::print_model(graph, &relative.display().to_string());
    cachemir_dsl::weights::save(&weights_path, &printed.weights).map_err(|m| anyhow::anyhow!(m))?;
    eprintln!(
        "wrote {} ({} weights)",
        weights_path.display(),
        printed.weights.len()
    );
    Ok(printed.text)
}

fn import_model(
    model: &Path,
    args: &ImportArgs,
    input_shapes: HashMap<String, Vec<usize>>,
) -> Result<Imported> {
    let options = ImportOptions {
        dims: args.dims.iter().cloned().collect(),
        input_shapes,
        outputs: args.outputs.clone(),
        inputs_at: args.inputs_at.clone(),
        encrypted: args.encrypted.clone(),
    };
    import_file(model, &options).map_err(|e| {
        input_error(anyhow::Error::new(e).context(format!("importing {}", model.display())))
    })
}

fn eval(
    model: &Path,
    case_path: &Path,
    out: &Path,
    expect: bool,
    precision: PrecisionArg,
    args: &ImportArgs,
) -> Result<()> {
    let case = Case::load(case_path).map_err(input_error)?;
    let imported = load_model(model, args, case.input_shapes())?;
    let precision = match precision {
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::F64 => Precision::F64,
    };
    let outputs = run_case(&imported.graph, &case, precision)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for output in imported.graph.outputs() {
        let path = out.join(output_file_name(&output.name));
        write_npy(&path, &outputs[&output.name])?;
        println!("wrote {}", path.display());
    }
    if expect {
        println!(
            "{:<28} {:>14} {:>14} {:>12}",
            "output", "max abs err", "max rel err", "max |ref|"
        );
        for (name, path) in &case.expected {
            let Some(actual) = outputs.get(name) else {
                bail!("the case expects `{name}`, which the graph does not output");
            };
            let reference = read_npy(path).map_err(input_error)?;
            let c = compare(name, actual, &reference, None)
                .map_err(|m| input_error(anyhow::anyhow!(m)))?;
            println!(
                "{:<28} {:>14.3e} {:>14.3e} {:>12.4}",
                c.name, c.max_abs_error, c.max_relative_error, c.max_abs_reference
            );
        }
    }
    Ok(())
}
