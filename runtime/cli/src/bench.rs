//! `cachemir bench`: medians of the CKKS primitives at one parameter set, as a table or as JSON
//! (`{"params": {...}, "threads", "results": [{"op", "level", "median_ms", "runs"}]}`) for
//! `../shared/anchors/compare.py`; `--bootstrap` times bootstrapping ([`bootstrap`]); `--plan`
//! times every instruction class a plan uses and writes the compiler's cost model ([`plan`]).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use cachemir_ckks::{
    CkksContext, Csprng, Decryptor, Encoder, Encryptor, Evaluator, GaloisKeys, KeyGenerator,
    ParamSet, Security,
};
use clap::Args;

mod bootstrap;
mod plan;

/// Options of `cachemir bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Parameter set (N16Boot, N17Boot, or ToyN12/ToyN13 with --insecure; default N16Boot, or
    /// with --plan the plan's own set).
    #[arg(long)]
    params: Option<String>,
    /// Allow insecure (Toy…) parameter sets.
    #[arg(long)]
    insecure: bool,
    /// Worker threads (rayon).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Timed runs per operation (after one warm-up run).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Only these operations (comma-separated, e.g. `mul_relin,rotate`); default: all.
    #[arg(long, value_delimiter = ',')]
    ops: Vec<String>,
    /// Benchmark bootstrapping instead (op `bootstrap`; sets N16BootFull, ToyBootN12).
    #[arg(long)]
    bootstrap: bool,
    /// Message slots for --bootstrap (power of two ≤ N/2; default N/2).
    #[arg(long)]
    slots: Option<usize>,
    /// Time every instruction class this plan uses, at levels spanning those it uses, and write
    /// the fitted cost model (JSON for `cachemirc report --cost-model`) to `-o`.
    #[arg(long, value_name = "PLAN", conflicts_with_all = ["bootstrap", "ops", "json"], requires = "output")]
    plan: Option<std::path::PathBuf>,
    /// The cost model file --plan writes.
    #[arg(short = 'o', long, value_name = "COST.json", requires = "plan")]
    output: Option<std::path::PathBuf>,
}

impl BenchArgs {
    /// The parameter set's name: `--params`, else `default`.
    fn params_or<'a>(&'a self, default: &'a str) -> &'a str {
        self.params.as_deref().unwrap_or(default)
    }
}

/// Checks `--threads` and `--runs` and sizes rayon's global pool.
fn thread_pool(args: &BenchArgs) -> Result<()> {
    if args.threads == 0 || args.runs == 0 {
        bail!("--threads and --runs must be at least 1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()
        .context("configuring the thread pool")
}

struct Row {
    op: &'static str,
    level: usize,
    median_ms: f64,
    runs: usize,
    /// −log2 of the max abs error against the cleartext result, where checked.
    precision_bits: Option<f64>,
}

/// A timing without a precision check.
fn untimed<T>(r: Result<(f64, T)>) -> Result<(f64, Option<f64>)> {
    r.map(|(ms, _)| (ms, None))
}

/// −log2 max |want − got|.
fn precision_bits(want: &[f64], got: &[f64]) -> f64 {
    let err = want
        .iter()
        .zip(got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    -err.max(1e-300).log2()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The `params` object of the bench JSON: the parameter set's shape and its security level
/// in bits (0 for the insecure toy sets).
fn params_json(p: &cachemir_ckks::params::CkksParameters, security_bits: u32) -> serde_json::Value {
    serde_json::json!({
        "name": p.name,
        "log_n": p.log_n,
        "limbs": p.q.len(),
        "special_limbs": p.p.len(),
        "dnum": p.dnum,
        "scale_bits": p.log_scale,
        "log_qp": p.log_qp(),
        "security_bits": security_bits,
    })
}

/// Times `f` `runs` times after one warm-up; returns the median in ms and the last output.
fn time<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    let mut out = f()?;
    let mut t = Vec::with_capacity(runs);
    for _ in 0..runs {
        drop(out);
        let start = Instant::now();
        out = f()?;
        t.push(start.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(t), out))
}

pub fn run(args: &BenchArgs) -> Result<()> {
    if let (Some(plan), Some(output)) = (&args.plan, &args.output) {
        return plan::run(args, plan, output);
    }
    if args.bootstrap {
        return bootstrap::run(args);
    }
    let name = args.params_or("N16Boot");
    let set = ParamSet::from_name(name).with_context(|| {
        format!(
            "unknown parameter set `{name}` (known: {})",
            ParamSet::ALL.map(|s| s.name()).join(", ")
        )
    })?;
    if set.is_toy() && !args.insecure {
        bail!(
            "parameter set {} is insecure (toy); pass --insecure to use it",
            set.name()
        );
    }
    thread_pool(args)?;
    let security = if set.is_toy() {
        Security::InsecureForTesting
    } else {
        Security::Bits128
    };
    let ctx = CkksContext::from_set(set, security)?;
    let p = ctx.params().clone();
    let level = ctx.max_level();
    let slots = ctx.n() / 2;
    let scale = p.default_scale();
    let runs = args.runs;
    let hoisted_runs = runs.div_ceil(2).max(2);
    if !args.json {
        eprintln!(
            "cachemir bench: {} (N = 2^{}, {} q-limbs, {} special, dnum {}, Δ = 2^{}, log2 QP = {:.0}), {} thread(s)",
            p.name,
            p.log_n,
            p.q.len(),
            p.p.len(),
            p.dnum,
            p.log_scale,
            p.log_qp(),
            args.threads
        );
    }
    let mut kg = KeyGenerator::new(&ctx)?;
    let sk = kg.secret_key();
    let pk = kg.public_key(&sk)?;
    let rlk = kg.relin_key(&sk, level)?;
    let steps: Vec<i64> = (1..=16).collect();
    let rotations = args.ops.is_empty()
        || args
            .ops
            .iter()
            .any(|o| o == "rotate" || o == "rotate_hoisted_16");
    let gks = if rotations {
        kg.galois_keys(&sk, &steps, false, level)?
    } else {
        GaloisKeys::default()
    };
    let enc = Encoder::new(&ctx);
    let mut encryptor = Encryptor::new(&ctx)?;
    let dec = Decryptor::new(&ctx);
    let eval = Evaluator::new(&ctx);
    let mut rng = Csprng::from_os()?;
    let x: Vec<f64> = (0..slots)
        .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        .collect();

    const OPS: [&str; 10] = [
        "encode",
        "encrypt",
        "decrypt",
        "add",
        "mul_plain",
        "mul_relin",
        "rescale",
        "rotate",
        "rotate_hoisted_16",
        "keygen_galois",
    ];
    if let Some(bad) = args.ops.iter().find(|o| !OPS.contains(&o.as_str())) {
        bail!("unknown op `{bad}` (known: {})", OPS.join(", "));
    }
    let want = |op: &str| args.ops.is_empty() || args.ops.iter().any(|o| o == op);
    let mut rows = Vec::new();
    let mut push = |op, level, (median_ms, precision_bits): (f64, Option<f64>), runs| {
        rows.push(Row {
            op,
            level,
            median_ms,
            runs,
            precision_bits,
        });
    };
    if want("encode") {
        push(
            "encode",
            level,
            untimed(time(runs, || Ok(enc.encode_real(&x, slots, level, scale)?)))?,
            runs,
        );
    }
    let pt = enc.encode_real(&x, slots, level, scale)?;
    if want("encrypt") {
        push(
            "encrypt",
            level,
            {
                let (ms, ct) = time(runs, || Ok(encryptor.encrypt_pk(&pk, &pt)?))?;
                (ms, Some(precision_bits(&x, &dec.decrypt_real(&sk, &ct)?)))
            },
            runs,
        );
    }
    let a = encryptor.encrypt_pk(&pk, &pt)?;
    let b = encryptor.encrypt_pk(&pk, &pt)?;
    if want("decrypt") {
        push(
            "decrypt",
            level,
            untimed(time(runs, || Ok(dec.decrypt_real(&sk, &a)?)))?,
            runs,
        );
    }
    if want("add") {
        push(
            "add",
            level,
            untimed(time(runs, || Ok(eval.add(&a, &b)?)))?,
            runs,
        );
    }
    if want("mul_plain") {
        push(
            "mul_plain",
            level,
            untimed(time(runs, || Ok(eval.mul_plain(&a, &pt)?)))?,
            runs,
        );
    }
    if want("mul_relin") {
        push(
            "mul_relin",
            level,
            {
                let (ms, ct) = time(runs, || Ok(eval.mul_relin(&a, &b, &rlk)?))?;
                let got = dec.decrypt_real(&sk, &eval.rescale(&ct)?)?;
                let want: Vec<f64> = x.iter().map(|v| v * v).collect();
                (ms, Some(precision_bits(&want, &got)))
            },
            runs,
        );
    }
    let prod = eval.mul_relin(&a, &b, &rlk)?;
    if want("rescale") {
        push(
            "rescale",
            level,
            untimed(time(runs, || Ok(eval.rescale(&prod)?)))?,
            runs,
        );
    }
    if want("rotate") {
        push(
            "rotate",
            level,
            {
                let (ms, ct) = time(runs, || Ok(eval.rotate(&a, 1, &gks)?))?;
                let want: Vec<f64> = (0..slots).map(|j| x[(j + 1) % slots]).collect();
                (
                    ms,
                    Some(precision_bits(&want, &dec.decrypt_real(&sk, &ct)?)),
                )
            },
            runs,
        );
    }
    if want("rotate_hoisted_16") {
        push(
            "rotate_hoisted_16",
            level,
            {
                let (ms, cts) = time(hoisted_runs, || {
                    let h = eval.hoist(&a)?;
                    Ok(eval.rotate_hoisted(&h, &steps, &gks)?)
                })?;
                let want: Vec<f64> = (0..slots).map(|j| x[(j + 4) % slots]).collect();
                (
                    ms,
                    Some(precision_bits(&want, &dec.decrypt_real(&sk, &cts[3])?)),
                )
            },
            hoisted_runs,
        );
    }
    let kg_runs = runs.div_ceil(2).max(1);
    if want("keygen_galois") {
        push(
            "keygen_galois",
            level,
            untimed(time(kg_runs, || Ok(kg.galois_key(&sk, 5, level)?)))?,
            kg_runs,
        );
    }

    let security_bits = if set.is_toy() { 0 } else { 128 };
    if args.json {
        let results: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut o = serde_json::json!({"op": r.op, "level": r.level, "median_ms": r.median_ms, "runs": r.runs});
                if let Some(b) = r.precision_bits {
                    o["precision_bits"] = serde_json::json!(b);
                }
                o
            })
            .collect();
        let out = serde_json::json!({
            "params": params_json(&p, security_bits),
            "threads": args.threads,
            "results": results,
        });
        println!("{out}");
    } else {
        println!(
            "{:<20} {:>6} {:>12} {:>5} {:>10}",
            "op", "level", "median ms", "runs", "prec bits"
        );
        for r in &rows {
            let prec = r
                .precision_bits
                .map_or(String::new(), |b| format!("{b:.1}"));
            println!(
                "{:<20} {:>6} {:>12.2} {:>5} {:>10}",
                r.op, r.level, r.median_ms, r.runs, prec
            );
        }
    }
    Ok(())
}
