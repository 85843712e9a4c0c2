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
        cachemirc eval tiny_llama_decode_step_p15_ts17.onnx --inputs models/tiny_llama_decode_step_p15_ts17/case0.json --out out/ --expect\n  \
        cachemirc compile tiny_llama_decode_step_p15_ts17.onnx --calibration models/tiny_llama_decode_step_p15_ts17/calib.json --sample models/tiny_llama_decode_step_p15_ts17/case0.json --encrypt-from /model/model/embed_tokens/Gather_output_0 -o llama.plan\n  \
        cachemirc report llama.plan [--json] [--cost-model bench.json]\n  \
        cachemirc dot llama.plan -o llama.dot"
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
        /// What to print: the summary, the IR as text (as JSON, loadable by `eval`, when -o ends
        /// in `.json`), the IR as JSON (with weights), or Cachemir model text (with
        /// `--weights-out`).
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
    /// Compile a model: tensor-level passes (recognize, decompose, calibrate, approximate), then
    /// with `-o FILE.plan` (or `--emit plan|plan-json|asm`) the slot-level lowering to a plan and
    /// its weights file.
    Compile(Box<CompileArgs>),
    /// Print a plan's report: per layer and in total the operation counts, rotations and key
    /// switches, multiplicative depth, level profile, every bootstrap, the key set, weight bytes,
    /// peak ciphertext memory and the estimated latency (docs/report.md).
    Report {
        /// The plan (`.plan`, or the JSON of `compile --emit plan-json`).
        plan: PathBuf,
        /// Print the report as JSON (schema in docs/report.md).
        #[arg(long)]
        json: bool,
        /// The latency cost model (JSON, as `cachemir bench` writes it); default: the built-in
        /// CPU model (OpenFHE, one thread, N = 2^16).
        #[arg(long, value_name = "FILE")]
        cost_model: Option<PathBuf>,
        /// For an unleveled plan (no parameters): the level every instruction is costed at
        /// (default 0, a lower bound).
        #[arg(long, value_name = "LEVEL", default_value_t = 0)]
        assume_level: u32,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print a plan's site-level dataflow as a Graphviz graph (`dot -Tsvg`).
    Dot {
        /// The plan (`.plan`, or the JSON of `compile --emit plan-json`).
        plan: PathBuf,
        /// Write to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
struct CompileArgs {
    /// The `.onnx`, `.cmr` or IR `.json` file.
    model: PathBuf,
    /// Calibration inputs (`calib.json`: each input's `.npy` stacks the samples on axis 0).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Without calibration data (shape-only models, `weights none`): assume every value in
    /// [−B, B] and values under 1/x, 1/√x, √x, log in [0.125, 4]. The plan's cost is right, its
    /// accuracy is not.
    #[arg(long, value_name = "B", conflicts_with = "calibration")]
    assume_range: Option<f64>,
    /// Bind the ONNX model's symbolic dimensions from this case file's input shapes.
    #[arg(long)]
    sample: Option<PathBuf>,
    /// The client computes everything before this value in the clear and encrypts it here
    /// (e.g. the token embedding); repeatable.
    #[arg(long)]
    encrypt_from: Vec<String>,
    /// Compile a generation plan: one decode step run once per token (the prompt too), its
    /// KV-cache states sliding by one position a step, for contexts up to `--max-context N`
    /// tokens (a decoder-with-past export; `cachemir generate` runs it).
    #[arg(long, requires = "max_context")]
    generation: bool,
    /// Target absolute error of each approximation: 2^-bits.
    #[arg(long, default_value_t = 12)]
    precision_bits: u32,
    /// Squaring steps of each encrypted softmax: more steps narrow the exponent's domain and the
    /// first denominator's range, at two levels and one reciprocal each.
    #[arg(long, default_value_t = 3)]
    softmax_squarings: u32,
    /// Fold an orthogonal rotation of the residual stream into the weights (RMSNorm models):
    /// same outputs, outliers spread over all channels. The report gives each norm input's
    /// max |activation| before and after (over the calibration samples).
    #[arg(long, value_enum)]
    rotate_residual: Option<RotateResidualArg>,
    /// Seed of the rotation's random signs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Widen each calibrated range by this fraction of its width on each side.
    #[arg(long, default_value_t = 0.1)]
    margin: f64,
    /// Stop after this pass (recognize, rotate_residual, rewrite, decompose, calibrate,
    /// approximate).
    #[arg(long)]
    stop_after: Option<String>,
    /// Print the IR after this pass to standard error (repeatable).
    #[arg(long)]
    dump_after: Vec<String>,
    /// What to write: the tensor-level report, the IR as text (as JSON, loadable by `eval`, when
    /// -o ends in `.json`), the IR as JSON, model text plus weights, or (lowered to slots) the
    /// binary plan, the plan as JSON, or its disassembly. Default: `plan` when -o ends in
    /// `.plan`, else `summary`.
    #[arg(long, value_enum)]
    emit: Option<CompileEmit>,
    /// Write to this file instead of standard output. A plan's weights go next to it, as
    /// `<stem>.weights.safetensors`.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Slots per ciphertext of the plan (a power of two; 2^15 = N/2 for N = 2^16).
    #[arg(long, default_value_t = 1 << 15)]
    slots: usize,
    /// The interleaved period of the plan's activations (default: chosen by cost).
    #[arg(long)]
    period: Option<usize>,
    /// Also list every kernel instance of the plan (site, kernel, counts).
    #[arg(short, long)]
    verbose: bool,
    /// Level the plan for a bootstrappable parameter set: rescales, level drops and bootstraps
    /// placed, every level explicit. A name (`N16BootFull`, 128-bit; `ToyBootN12` with
    /// `--insecure`) or a JSON file holding one of them. Without it the plan is unleveled.
    #[arg(long, value_name = "NAME|FILE.json")]
    params: Option<String>,
    /// Accept an insecure (toy) parameter set: tests only.
    #[arg(long)]
    insecure: bool,
    /// Bootstrap placement with `--params`.
    #[arg(long, value_enum, default_value = "kv-aware")]
    placement: PlacementArg,
    /// Cost model for the placement (JSON, as `cachemir bench` writes it); default: the
    /// documented CPU model.
    #[arg(long, value_name = "FILE")]
    cost_model: Option<PathBuf>,
    /// Memory budget of the rotation keys in GB: steps beyond it are composed from the powers of
    /// two and the most useful direct keys.
    #[arg(long, value_name = "GB", default_value_t = 16.0)]
    key_budget: f64,
    #[command(flatten)]
    import: ImportArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlacementArg {
    /// Optimal under the cost model, KV-cache storage levels included (Cachemir).
    KvAware,
    /// Bootstrap a value as soon as a consumer would run out of levels (waterline baseline).
    Greedy,
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
    /// Bind a decoder-with-past export (`optimum` convention) as one decode step of batch 1
    /// against a cache of N − 1 positions (`input_ids` [1, 1], `attention_mask` [1, N],
    /// `past_key_values.*` [1, kv_heads, N − 1, head_dim]).
    #[arg(long, value_name = "N")]
    max_context: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    Summary,
    Ir,
    Json,
    Dsl,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompileEmit {
    /// The tensor-level report (passes, approximations, depth).
    Summary,
    /// The approximated IR as text (as JSON when -o ends in `.json`).
    Ir,
    /// The approximated IR as JSON.
    Json,
    /// Cachemir model text plus weights.
    Dsl,
    /// The binary plan (`cachemir run` reads it) and its weights.
    Plan,
    /// The plan as JSON (same structure as the binary form) and its weights.
    PlanJson,
    /// The plan's disassembly: one instruction per line, grouped by site.
    Asm,
}

impl CompileEmit {
    /// Whether this emit lowers the graph to a plan.
    fn lowers(self) -> bool {
        matches!(self, Self::Plan | Self::PlanJson | Self::Asm)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum RotateResidualArg {
    /// A randomised Hadamard rotation (the residual width must be a power of two).
    Hadamard,
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
                Emit::Ir => ir_text(&loaded.graph, output.as_deref())?,
                Emit::Json => serde_json::to_string(&loaded.graph)?,
                Emit::Dsl => {
                    // Model text reads best with the composite ops an exporter spelled out.
                    let mut graph = loaded.graph;
                    cachemir_ir::recognize::recognize(&mut graph);
                    emit_dsl(&graph, output.as_deref(), weights_out)?
                }
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
        Command::Compile(args) => compile(*args),
        Command::Report {
            plan,
            json,
            cost_model,
            assume_level,
            output,
        } => {
            use cachemir_compiler::report::{PlanReport, ReportOptions};
            let plan = read_plan(&plan)?;
            let cost = match &cost_model {
                Some(path) => cachemir_ir::plan::CostModel::from_file(path).map_err(input_error)?,
                None => cachemir_ir::plan::CostModel::default_cpu(),
            };
            let options = ReportOptions {
                assumed_level: assume_level,
            };
            let report = PlanReport::new(&plan, &cost, &options)
                .map_err(|e| input_error(anyhow::anyhow!("{}: {e}", plan.name)))?;
            let text = if json {
                let mut text = report.json();
                text.push('\n');
                text
            } else {
                report.text()
            };
            write_text(output.as_deref(), &text)
        }
        Command::Dot { plan, output } => {
            let plan = read_plan(&plan)?;
            write_text(
                output.as_deref(),
                &cachemir_compiler::report::dot::dot(&plan),
            )
        }
    }
}

/// Reads a plan file: the binary form, or its JSON (`--emit plan-json`); validated either way.
fn read_plan(path: &Path) -> Result<cachemir_ir::plan::Plan> {
    use cachemir_ir::plan::Plan;
    let bytes = std::fs::read(path)
        .map_err(|e| input_error(anyhow::anyhow!("reading {}: {e}", path.display())))?;
    let plan = if bytes.first() == Some(&b'{') {
        let plan: Plan = serde_json::from_slice(&bytes)
            .map_err(|e| input_error(anyhow::anyhow!("{}: not a plan: {e}", path.display())))?;
        plan.validate()
            .map_err(|e| input_error(anyhow::anyhow!("{}: {e}", path.display())))?;
        plan
    } else {
        Plan::from_bytes(&bytes)
            .map_err(|e| input_error(anyhow::anyhow!("{}: {e}", path.display())))?
    };
    Ok(plan)
}

/// Writes `text` to `output`, or to standard output.
fn write_text(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn compile(args: CompileArgs) -> Result<()> {
    use cachemir_compiler::passes::approximate::{Approximate, ApproximationOptions, table};
    use cachemir_compiler::passes::calibrate::{Calibrate, Calibration};
    use cachemir_compiler::passes::decompose::Decompose;
    use cachemir_compiler::passes::rotate_residual::RotateResidual;
    use cachemir_compiler::passes::{Pipeline, Recognize, Rewrite, depth};

    let start = std::time::Instant::now();
    level_options(&args)?;
    let emit = args.emit.unwrap_or_else(|| {
        if args
            .output
            .as_deref()
            .is_some_and(|o| o.extension().is_some_and(|e| e == "plan"))
        {
            CompileEmit::Plan
        } else {
            CompileEmit::Summary
        }
    });
    if emit.lowers() {
        if let Some(pass) = &args.stop_after {
            return Err(input_error(anyhow::anyhow!(
                "--stop-after {pass} stops before the slot-level lowering; it applies to --emit summary, ir, json and dsl"
            )));
        }
        if emit == CompileEmit::Plan && args.output.is_none() {
            return Err(input_error(anyhow::anyhow!(
                "--emit plan writes a binary file: give -o FILE.plan"
            )));
        }
        if !args.slots.is_power_of_two() {
            return Err(input_error(anyhow::anyhow!(
                "--slots {}: the slot count must be a power of two",
                args.slots
            )));
        }
        if args.period == Some(0) {
            return Err(input_error(anyhow::anyhow!(
                "--period 0: the period must be positive"
            )));
        }
    }
    let shapes = match &args.sample {
        Some(case) => Case::load(case).map_err(input_error)?.input_shapes(),
        None => HashMap::new(),
    };
    let mut graph = load_model(&args.model, &args.import, shapes)?.graph;
    for name in &args.encrypt_from {
        graph
            .encrypt_from(name)
            .map_err(|e| input_error(anyhow::anyhow!("--encrypt-from: {e}")))?;
    }
    let generation = match (args.generation, args.import.max_context) {
        (true, Some(max_context)) => Some(
            cachemir_compiler::generation::generation_step(&mut graph, max_context)
                .map_err(|e| input_error(anyhow::anyhow!("--generation: {e}")))?,
        ),
        _ => None,
    };
    let decompose = Decompose {
        softmax_squarings: args.softmax_squarings,
    };
    let mut calibration = match &args.calibration {
        Some(path) => Some(Calibration::load(path).map_err(input_error)?),
        None => None,
    };
    if let (Some(generation), Some(calibration)) = (&generation, calibration.as_mut()) {
        cachemir_compiler::generation::generation_calibration(calibration, generation, &graph)
            .map_err(|e| input_error(anyhow::anyhow!("--generation: calibration: {e}")))?;
    }
    let mut pipeline = Pipeline::new().with(Recognize);
    if let Some(RotateResidualArg::Hadamard) = args.rotate_residual {
        let samples = calibration
            .as_ref()
            .map(|c| c.samples.clone())
            .unwrap_or_default();
        pipeline = pipeline.with(RotateResidual::new(args.seed).with_samples(samples));
    }
    let rewrite = std::rc::Rc::new(std::cell::RefCell::new(Rewrite::default()));
    pipeline = pipeline.with(SharedPass(rewrite.clone())).with(decompose);
    let needs_calibration = !matches!(
        args.stop_after.as_deref(),
        Some("recognize" | "rotate_residual" | "rewrite" | "decompose")
    );
    let mut approximate = None;
    if needs_calibration {
        pipeline = match (calibration, args.assume_range) {
            (Some(calibration), _) => pipeline.with(Calibrate { calibration }),
            (None, Some(bound)) => {
                pipeline.with(cachemir_compiler::passes::calibrate::AssumeRanges {
                    bound,
                    ..Default::default()
                })
            }
            (None, None) => {
                return Err(input_error(anyhow::anyhow!(
                    "--calibration CALIB.json (or --assume-range B for a shape-only model) is needed for `calibrate` and `approximate` (or stop earlier with --stop-after decompose)"
                )));
            }
        };
        let options = ApproximationOptions {
            precision_bits: args.precision_bits,
            margin: args.margin,
            ..Default::default()
        };
        approximate = Some(std::rc::Rc::new(std::cell::RefCell::new(Approximate {
            options,
            sites: Vec::new(),
        })));
        pipeline = pipeline.with(SharedPass(approximate.clone().expect("set")));
    }
    let mut dump = |pass: &str, g: &Graph| eprintln!("== IR after {pass}\n{}", print_graph(g));
    let records = pipeline
        .run(
            &mut graph,
            args.stop_after.as_deref(),
            &args.dump_after,
            &mut dump,
        )
        .map_err(input_error)?;
    if emit.lowers() {
        return write_plan(&graph, &args, emit, generation, start.elapsed());
    }
    let text = match emit {
        CompileEmit::Summary => {
            let mut report =
                String::from("pass          time (ms)   nodes before → after   what it did\n");
            for r in &records {
                report.push_str(&format!(
                    "{:<12} {:>10.1}   {:>7} → {:<7}     {}\n",
                    r.name,
                    r.elapsed.as_secs_f64() * 1e3,
                    r.nodes_before,
                    r.nodes_after,
                    r.summary
                ));
            }
            if let Some(r) = &rewrite.borrow().report {
                report.push_str(&format!("\n{r}"));
            }
            if let Some(a) = &approximate {
                report.push_str("\napproximations\n");
                report.push_str(&table(&a.borrow().sites));
            }
            report.push_str("\nmultiplicative depth (encrypted values)\n");
            let mut previous = 0;
            for (layer, d) in depth::depth_by_layer(&graph) {
                report.push_str(&format!(
                    "  layer {layer}: reaches {d} (+{})\n",
                    d.saturating_sub(previous)
                ));
                previous = d;
            }
            let depths = depth::depths(&graph);
            for output in graph.outputs() {
                report.push_str(&format!(
                    "  output {}: {}\n",
                    output.name,
                    depths.get(&output.value.node).copied().unwrap_or(0)
                ));
            }
            report.push_str(
                "\n(-o FILE.plan lowers the graph to a plan that `cachemir run` executes)\n",
            );
            report
        }
        CompileEmit::Ir => ir_text(&graph, args.output.as_deref())?,
        CompileEmit::Json => serde_json::to_string(&graph)?,
        CompileEmit::Dsl => emit_dsl(&graph, args.output.as_deref(), None)?,
        CompileEmit::Plan | CompileEmit::PlanJson | CompileEmit::Asm => {
            unreachable!("lowering emits returned above")
        }
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// The slot-level half of `compile`: lowers the approximated graph and writes the plan (binary,
/// JSON or disassembly) and, next to a plan file, its weights; prints the plan summary.
fn write_plan(
    graph: &Graph,
    args: &CompileArgs,
    emit: CompileEmit,
    generation: Option<cachemir_ir::plan::Generation>,
    tensor_level: std::time::Duration,
) -> Result<()> {
    use cachemir_compiler::lower::weights::write_weights;
    use cachemir_compiler::lower::{LowerOptions, lower};

    let output = args.output.as_deref();
    let weights_file = weights_file_name(output.unwrap_or(&args.model));
    let start = std::time::Instant::now();
    let lowered = lower(
        graph,
        &LowerOptions {
            slots: args.slots,
            period: args.period,
            weights_file: weights_file.clone(),
        },
    )
    .map_err(|e| {
        let hint = if args.encrypt_from.is_empty() {
            " (without --encrypt-from only the float inputs are encrypted; --encrypt-from NAME \
             has the client encrypt from that value, e.g. the token embedding)"
        } else {
            ""
        };
        input_error(anyhow::anyhow!("lowering: {e}{hint}"))
    })?;
    let mut lowered = lowered;
    if generation.is_some() {
        lowered.plan = cachemir_compiler::lower::dedupe::dedupe(&lowered.plan).0;
    }
    let lowering = start.elapsed();
    lowered
        .plan
        .validate()
        .context("the lowered plan is inconsistent (a compiler bug)")?;
    let start = std::time::Instant::now();
    let leveled = match level_options(args)? {
        Some(options) => Some(
            cachemir_compiler::levels::assign_levels(
                &lowered.plan,
                &|site| cachemir_compiler::levels::calibrated_bound(graph, site),
                &options,
            )
            .map_err(|e| input_error(anyhow::anyhow!("levels: {e}")))?,
        ),
        None => None,
    };
    let leveling = start.elapsed();
    // A leveled plan is final: it is scheduled. An unleveled one keeps the lowering's order, in
    // which the level pass (or a later `--params` compile) expects each site's instructions.
    let start = std::time::Instant::now();
    let (mut plan, schedule_line) = match &leveled {
        Some(l) => {
            let scheduled = cachemir_compiler::schedule::schedule(&l.plan)
                .context("scheduling (a compiler bug)")?;
            let line = schedule_summary(
                &scheduled.before,
                &scheduled.after,
                scheduled.plan.registers,
            );
            (scheduled.plan, Some(line))
        }
        None => (lowered.plan.clone(), None),
    };
    let scheduling = start.elapsed();
    if generation.is_some() {
        plan.generation = generation;
        plan.validate()
            .context("the generation plan is inconsistent (a compiler bug)")?;
    }
    let (bytes, weights) = match emit {
        CompileEmit::Plan => (plan.to_bytes()?, true),
        CompileEmit::PlanJson => (serde_json::to_vec(&plan)?, true),
        CompileEmit::Asm => (plan.disassemble().into_bytes(), false),
        _ => unreachable!("only lowering emits reach write_plan"),
    };
    let summary = plan_summary(&lowered, args.verbose);
    match output {
        Some(path) => {
            let dir = path.parent().unwrap_or(Path::new(""));
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
            if weights {
                let weights_path = dir.join(&weights_file);
                write_weights(&lowered, graph, &weights_path).map_err(|m| anyhow::anyhow!(m))?;
                let size = std::fs::metadata(&weights_path).map_or(0, |m| m.len());
                println!(
                    "wrote {} ({} weights, {size} bytes)",
                    weights_path.display(),
                    plan.weight_shapes.len()
                );
            }
            print!("{summary}");
            if let Some(l) = &leveled {
                println!("{}", leveling_summary(l));
            }
            if let Some(line) = &schedule_line {
                println!("{line}");
            }
            println!(
                "compiled in {:.2} s (import and tensor-level passes {:.2} s, lowering {:.2} s, \
                 levels {:.2} s, schedule {:.2} s)",
                (tensor_level + lowering + leveling + scheduling).as_secs_f64(),
                tensor_level.as_secs_f64(),
                lowering.as_secs_f64(),
                leveling.as_secs_f64(),
                scheduling.as_secs_f64()
            );
        }
        None => {
            // The plan goes to standard output; the summary to standard error.
            use std::io::Write;
            std::io::stdout()
                .write_all(&bytes)
                .context("writing to standard output")?;
            eprint!("{summary}");
            if let Some(l) = &leveled {
                eprintln!("{}", leveling_summary(l));
            }
            if let Some(line) = &schedule_line {
                eprintln!("{line}");
            }
        }
    }
    Ok(())
}

/// The level pass's options from `--params NAME|FILE.json` and its companions (see
/// [`CompileArgs::params`]); `None` without `--params`. Checked before any other work.
fn level_options(args: &CompileArgs) -> Result<Option<cachemir_compiler::levels::LevelOptions>> {
    use cachemir_compiler::levels::{LevelOptions, StatePolicy, Strategy, params};
    let Some(name) = &args.params else {
        return Ok(None);
    };
    let known = || {
        params::named()
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let parameters = match params::by_name(name) {
        Some(p) => p,
        None if name.ends_with(".json") => {
            let text = std::fs::read_to_string(name)
                .with_context(|| format!("reading --params {name}"))
                .map_err(input_error)?;
            let given: cachemir_ir::plan::Parameters = serde_json::from_str(&text)
                .with_context(|| format!("--params {name}"))
                .map_err(input_error)?;
            // Only sets whose primes the CKKS crate builds and checks are accepted.
            match params::by_name(&given.name) {
                Some(checked) if checked == given => checked,
                _ => {
                    return Err(input_error(anyhow::anyhow!(
                        "--params {name}: `{}` is not one of the checked parameter sets ({})",
                        given.name,
                        known()
                    )));
                }
            }
        }
        None => {
            return Err(input_error(anyhow::anyhow!(
                "--params {name}: unknown parameter set (known: {})",
                known()
            )));
        }
    };
    if parameters.toy && !args.insecure {
        return Err(input_error(anyhow::anyhow!(
            "--params {}: an insecure test set; pass --insecure to use it anyway",
            parameters.name
        )));
    }
    let mut options = LevelOptions::new(parameters);
    if let Some(path) = &args.cost_model {
        options.cost = cachemir_ir::plan::CostModel::from_file(path).map_err(input_error)?;
    }
    options.key_budget_bytes = Some((args.key_budget * 1e9) as u64);
    options.strategy = match args.placement {
        PlacementArg::KvAware => Strategy::Optimal(StatePolicy::Optimised),
        PlacementArg::Greedy => Strategy::Greedy,
    };
    Ok(Some(options))
}

/// One line on the level pass: parameters, bootstraps, estimated latency.
fn leveling_summary(l: &cachemir_compiler::levels::Leveled) -> String {
    let p = l
        .plan
        .parameters
        .as_ref()
        .expect("leveled plans have parameters");
    format!(
        "levels: {} (N = 2^{}, top level {}, bootstraps to {}), {} bootstrapped ciphertexts at \
         {} sites, estimated {:.1} s per run (placement {}); {} rotation keys ({:.1} GB), {} \
         rotations ({} before composing)",
        p.name,
        p.log_n,
        p.max_level,
        p.bootstrap_level.unwrap_or(0),
        l.bootstrapped_ciphertexts,
        l.placement.bootstraps(),
        l.placement.cost_ms / 1e3,
        if l.placement.greedy_fallback {
            "greedy waterline: the state-capped search found none"
        } else if l.placement.exact {
            "exact"
        } else {
            "state-capped"
        },
        l.keys.keys.len(),
        l.keys.bytes as f64 / 1e9,
        l.keys.rotations_after,
        l.keys.rotations_before
    )
}

/// `<stem>.weights.safetensors` for a plan written to `output` (`model.plan`,
/// `model.plan.json`, `model.asm` → `model.weights.safetensors`).
fn weights_file_name(output: &Path) -> String {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let stem = [".plan.json", ".plan", ".json", ".asm", ".onnx", ".cmr"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|stem| !stem.is_empty())
        .map_or_else(
            || {
                output
                    .file_stem()
                    .map_or("model".into(), |s| s.to_string_lossy().into_owned())
            },
            str::to_string,
        );
    format!("{stem}.weights.safetensors")
}

/// The plan summary `compile` prints: slots, period, instruction counts by mnemonic, rotation
/// steps, weights, and per layer the rotations and multiplications (with `verbose`, every
/// kernel). No timings or paths, so it is stable for a given model and compiler.
fn plan_summary(lowered: &cachemir_compiler::lower::Lowered, verbose: bool) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;

    let plan = &lowered.plan;
    let counts = plan.counts();
    let weight_elements: usize = plan
        .weight_shapes
        .values()
        .map(|s| s.iter().product::<usize>())
        .sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan {}: {} slots, period {}",
        plan.name, plan.slots, lowered.period
    );
    let _ = writeln!(
        out,
        "ciphertexts: {} in, {} out ({} KV-cache states)",
        plan.inputs.len(),
        plan.outputs.len(),
        plan.states.len()
    );
    let _ = writeln!(
        out,
        "instructions: {} over {} registers, {} plaintexts, {} range checks",
        plan.instructions.len(),
        plan.registers,
        plan.plaintexts.len(),
        plan.checks.len()
    );
    let by_mnemonic: Vec<String> = counts.iter().map(|(m, n)| format!("{m} {n}")).collect();
    let _ = writeln!(out, "  {}", by_mnemonic.join(", "));
    let _ = writeln!(out, "rotation steps: {} distinct", plan.rotations.len());
    let _ = writeln!(
        out,
        "weights: {} tensors, {} bytes (f32)",
        plan.weight_shapes.len(),
        weight_elements * 4
    );

    // Per layer: the nodes' rotations, ct-pt and ct-ct multiplications; what the outputs add
    // (gathers into the KV-cache layout, masks) is the rest of the plan's totals.
    type Row = (usize, usize, usize);
    let mut layers: BTreeMap<Option<u32>, Row> = BTreeMap::new();
    for (_, layer, c) in &lowered.site_counts {
        let row = layers.entry(*layer).or_default();
        row.0 += c.rotations;
        row.1 += c.plaintext_multiplications;
        row.2 += c.ciphertext_multiplications;
    }
    let sum = layers
        .values()
        .fold((0, 0, 0), |a, r| (a.0 + r.0, a.1 + r.1, a.2 + r.2));
    let get = |m: &str| counts.get(m).copied().unwrap_or(0);
    let total = (get("rot") + get("rot.h"), get("mul.p"), get("mul"));
    let line = |out: &mut String, name: &str, (r, p, c): Row| {
        let _ = writeln!(out, "{name:<8} {r:>10} {p:>12} {c:>12}");
    };
    let _ = writeln!(
        out,
        "{:<8} {:>10} {:>12} {:>12}",
        "layer", "rotations", "ct-pt mults", "ct-ct mults"
    );
    for (layer, row) in &layers {
        if let Some(layer) = layer {
            line(&mut out, &layer.to_string(), *row);
        }
    }
    if let Some(row) = layers.get(&None) {
        line(&mut out, "other", *row);
    }
    line(
        &mut out,
        "outputs",
        (
            total.0.saturating_sub(sum.0),
            total.1.saturating_sub(sum.1),
            total.2.saturating_sub(sum.2),
        ),
    );
    line(&mut out, "total", total);
    if verbose {
        let width = lowered
            .kernels
            .iter()
            .map(|k| k.kernel.chars().count())
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "kernels ({})\n{:>9} {:>11} {:>11}  {:<width$}  site",
            lowered.kernels.len(),
            "rotations",
            "ct-pt mults",
            "ct-ct mults",
            "kernel"
        );
        for k in &lowered.kernels {
            let pad = width - k.kernel.chars().count();
            let _ = writeln!(
                out,
                "{:>9} {:>11} {:>11}  {}{:pad$}  {}",
                k.counts.rotations,
                k.counts.plaintext_multiplications,
                k.counts.ciphertext_multiplications,
                k.kernel,
                "",
                k.site
            );
        }
    }
    out
}

/// A pass shared with the caller, who reads its results after the pipeline ran.
struct SharedPass<P>(std::rc::Rc<std::cell::RefCell<P>>);

impl<P: cachemir_compiler::passes::Pass> cachemir_compiler::passes::Pass for SharedPass<P> {
    fn name(&self) -> &'static str {
        self.0.borrow().name()
    }

    fn run(
        &mut self,
        graph: &mut Graph,
    ) -> Result<String, cachemir_compiler::passes::CompileError> {
        self.0.borrow_mut().run(graph)
    }
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
    if model.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(model)
            .with_context(|| format!("reading {}", model.display()))?;
        let graph: Graph = serde_json::from_str(&text).map_err(|e| {
            input_error(anyhow::anyhow!(
                "{}: not a Tensor IR file: {e}",
                model.display()
            ))
        })?;
        graph
            .verify()
            .map_err(|e| input_error(anyhow::anyhow!("{}: {e}", model.display())))?;
        let summary = format!(
            "model {}\n{}",
            graph.name,
            cachemir_ir::printer::summary(&graph)
        );
        return Ok(Loaded { graph, summary });
    }
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

/// The IR as text, or as JSON (the form `eval` and `compile` load) for a `.json` output file.
fn ir_text(graph: &Graph, output: Option<&Path>) -> Result<String> {
    if output.is_some_and(|o| o.extension().is_some_and(|e| e == "json")) {
        Ok(serde_json::to_string(graph)?)
    } else {
        Ok(print_graph(graph))
    }
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
        decode_context: args.max_context,
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
            "{:<28} {:>14} {:>14} {:>12} {:>12}",
            "output", "max abs err", "max rel err", "max |ref|", "same argmax"
        );
        for (name, path) in &case.expected {
            let Some(actual) = outputs.get(name) else {
                bail!("the case expects `{name}`, which the graph does not output");
            };
            let reference = read_npy(path).map_err(input_error)?;
            let c = compare(name, actual, &reference, None)
                .map_err(|m| input_error(anyhow::anyhow!(m)))?;
            println!(
                "{:<28} {:>14.3e} {:>14.3e} {:>12.4} {:>12}",
                c.name,
                c.max_abs_error,
                c.max_relative_error,
                c.max_abs_reference,
                format!("{}/{}", c.same_argmax.0, c.same_argmax.1)
            );
        }
    }
    Ok(())
}

/// `schedule: peak … → … live ciphertexts (bytes), N registers`.
fn schedule_summary(
    before: &cachemir_compiler::report::memory::Memory,
    after: &cachemir_compiler::report::memory::Memory,
    registers: u32,
) -> String {
    let bytes = match (before.peak_bytes, after.peak_bytes) {
        (Some(b), Some(a)) => format!(
            " ({:.2} → {:.2} GiB)",
            b as f64 / f64::from(1u32 << 30),
            a as f64 / f64::from(1u32 << 30)
        ),
        _ => String::new(),
    };
    format!(
        "schedule: peak {} → {} live ciphertexts{bytes}, {registers} registers",
        before.peak_ciphertexts, after.peak_ciphertexts
    )
}
