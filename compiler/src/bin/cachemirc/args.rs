//! The command line: subcommands and their flags (clap).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
        /// Decode plans: the cache lengths (past positions) at which to estimate the latency per
        /// token, extrapolated from the plan's own length (which is always listed).
        #[arg(long, value_name = "N,N,…", value_delimiter = ',', default_values_t = cachemir_compiler::report::cache::DEFAULT_CACHE_LENGTHS)]
        cache_lengths: Vec<usize>,
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
pub(crate) struct CompileArgs {
    /// The `.onnx`, `.cmr` or IR `.json` file.
    pub(crate) model: PathBuf,
    /// Calibration inputs (`calib.json`: each input's `.npy` stacks the samples on axis 0).
    #[arg(long)]
    pub(crate) calibration: Option<PathBuf>,
    /// Without calibration data (shape-only models, `weights none`): assume every value in
    /// [−B, B] and values under 1/x, 1/√x, √x, log in [0.125, 4]. The plan's cost is right, its
    /// accuracy is not.
    #[arg(long, value_name = "B", conflicts_with = "calibration")]
    pub(crate) assume_range: Option<f64>,
    /// Bind the ONNX model's symbolic dimensions from this case file's input shapes.
    #[arg(long)]
    pub(crate) sample: Option<PathBuf>,
    /// The client computes everything before this value in the clear and encrypts it here
    /// (e.g. the token embedding); repeatable.
    #[arg(long)]
    pub(crate) encrypt_from: Vec<String>,
    /// Compile a generation plan: one decode step run once per token (the prompt too), its
    /// KV-cache states sliding by one position a step, for contexts up to `--max-context N`
    /// tokens (a decoder-with-past export; `cachemir generate` runs it).
    #[arg(long, requires = "max_context")]
    pub(crate) generation: bool,
    /// Target absolute error of each approximation: 2^-bits.
    #[arg(long, default_value_t = 12)]
    pub(crate) precision_bits: u32,
    /// Squaring steps of each encrypted softmax: more steps narrow the exponent's domain and the
    /// first denominator's range, at two levels and one reciprocal each. `auto`: the smallest
    /// count in 0..=4 for which decompose, calibrate and approximate succeed and every
    /// calibration sample and the `--sample` case evaluate inside every approximation's domain
    /// (the summary says why each smaller one failed); fewer levels, but less headroom for
    /// inputs beyond those.
    #[arg(long, value_name = "auto|K", default_value = "3", value_parser = parse_squarings)]
    pub(crate) softmax_squarings: Squarings,
    /// Fold an orthogonal rotation of the residual stream into the weights (RMSNorm models):
    /// same outputs, outliers spread over all channels. The report gives each norm input's
    /// max |activation| before and after (over the calibration samples).
    #[arg(long, value_enum)]
    pub(crate) rotate_residual: Option<RotateResidualArg>,
    /// Seed of the rotation's random signs.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Widen each calibrated range by this fraction of its width on each side.
    #[arg(long, default_value_t = 0.1)]
    pub(crate) margin: f64,
    /// Stop after this pass (recognize, rotate_residual, rewrite, decompose, calibrate,
    /// approximate).
    #[arg(long)]
    pub(crate) stop_after: Option<String>,
    /// Print the IR after this pass to standard error (repeatable).
    #[arg(long)]
    pub(crate) dump_after: Vec<String>,
    /// What to write: the tensor-level report, the IR as text (as JSON, loadable by `eval`, when
    /// -o ends in `.json`), the IR as JSON, model text plus weights, or (lowered to slots) the
    /// binary plan, the plan as JSON, or its disassembly. Default: `plan` when -o ends in
    /// `.plan`, else `summary`.
    #[arg(long, value_enum)]
    pub(crate) emit: Option<CompileEmit>,
    /// Write to this file instead of standard output. A plan's weights go next to it, as
    /// `<stem>.weights.safetensors`.
    #[arg(short, long)]
    pub(crate) output: Option<PathBuf>,
    /// Slots per ciphertext of the plan (a power of two; 2^15 = N/2 for N = 2^16).
    #[arg(long, default_value_t = 1 << 15)]
    pub(crate) slots: usize,
    /// The interleaved period of the plan's activations (default: chosen by cost).
    #[arg(long)]
    pub(crate) period: Option<usize>,
    /// Also list every kernel instance of the plan (site, kernel, counts).
    #[arg(short, long)]
    pub(crate) verbose: bool,
    /// Level the plan for a bootstrappable parameter set: rescales, level drops and bootstraps
    /// placed, every level explicit. A name (`N16BootFull`, 128-bit; `ToyBootN12` with
    /// `--insecure`), a JSON file holding one of them, or `auto`: chosen from the plan's slots,
    /// depth and key memory (a leveled 128-bit set when one fits is reported; the bootstrappable
    /// set is taken, the only kind the cpu backend runs). Without it the plan is unleveled.
    #[arg(long, value_name = "NAME|FILE.json|auto")]
    pub(crate) params: Option<String>,
    /// Accept an insecure (toy) parameter set: tests only.
    #[arg(long)]
    pub(crate) insecure: bool,
    /// Bootstrap placement with `--params`.
    #[arg(long, value_enum, default_value = "kv-aware")]
    pub(crate) placement: PlacementArg,
    /// Cost model for the placement (JSON, as `cachemir bench` writes it); default: the
    /// documented CPU model.
    #[arg(long, value_name = "FILE")]
    pub(crate) cost_model: Option<PathBuf>,
    /// Memory budget of the rotation keys in GB: steps beyond it are composed from the powers of
    /// two and the most useful direct keys.
    #[arg(long, value_name = "GB", default_value_t = 16.0)]
    pub(crate) key_budget: f64,
    #[command(flatten)]
    pub(crate) import: ImportArgs,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PlacementArg {
    /// Optimal under the cost model, KV-cache storage levels included (Cachemir).
    KvAware,
    /// Bootstrap a value as soon as a consumer would run out of levels (waterline baseline).
    Greedy,
}

#[derive(Args)]
pub(crate) struct ImportArgs {
    /// Bind a symbolic dimension: `--dim sequence=16` (repeatable).
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim)]
    pub(crate) dims: Vec<(String, usize)>,
    /// Keep only what these values need (comma-separated tensor names).
    #[arg(long, value_delimiter = ',')]
    pub(crate) outputs: Option<Vec<String>>,
    /// Make these values graph inputs, cutting off what computes them (comma-separated); with
    /// `--outputs` this extracts e.g. one encoder layer.
    #[arg(long, value_delimiter = ',')]
    pub(crate) inputs_at: Vec<String>,
    /// Inputs to encrypt (comma-separated); default: float inputs are encrypted, integer inputs public.
    #[arg(long, value_delimiter = ',')]
    pub(crate) encrypted: Option<Vec<String>>,
    /// Bind a decoder-with-past export (`optimum` convention) as one decode step of batch 1
    /// against a cache of N − 1 positions (`input_ids` [1, 1], `attention_mask` [1, N],
    /// `past_key_values.*` [1, kv_heads, N − 1, head_dim]).
    #[arg(long, value_name = "N")]
    pub(crate) max_context: Option<usize>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Emit {
    Summary,
    Ir,
    Json,
    Dsl,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum CompileEmit {
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
    pub(crate) fn lowers(self) -> bool {
        matches!(self, Self::Plan | Self::PlanJson | Self::Asm)
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum RotateResidualArg {
    /// A randomised Hadamard rotation (the residual width must be a power of two).
    Hadamard,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum PrecisionArg {
    F32,
    F64,
}

/// `--softmax-squarings`: a fixed count, or the smallest that compiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Squarings {
    Auto,
    Fixed(u32),
}

pub(crate) fn parse_squarings(text: &str) -> Result<Squarings, String> {
    if text.eq_ignore_ascii_case("auto") {
        return Ok(Squarings::Auto);
    }
    text.parse()
        .map(Squarings::Fixed)
        .map_err(|_| format!("`{text}`: expected `auto` or a number of squaring steps"))
}

pub(crate) fn parse_dim(text: &str) -> Result<(String, usize), String> {
    let (name, size) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=SIZE"))?;
    let size = size
        .parse()
        .map_err(|_| format!("`{text}`: `{size}` is not a size"))?;
    Ok((name.to_string(), size))
}
