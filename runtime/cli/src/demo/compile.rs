//! The demo's compile step: the embedded tiny Llama as a generation plan, the call sequence of
//! `cachemirc compile MODEL --calibration CALIB --generation --max-context C --encrypt-from
//! EMBEDDING --params P --slots S --softmax-squarings 2` with its defaults (precision 2^-12,
//! calibration margin 0.1, KV-aware bootstrap placement, 16 GB rotation-key budget), and the
//! report summary (`cachemirc report`).

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use cachemir_compiler::generation::{generation_calibration, generation_step};
use cachemir_compiler::levels::{LevelOptions, assign_levels, calibrated_bound, params};
use cachemir_compiler::lower::weights::write_weights;
use cachemir_compiler::lower::{LowerOptions, dedupe::dedupe, lower};
use cachemir_compiler::passes::approximate::Approximate;
use cachemir_compiler::passes::calibrate::{Calibrate, Calibration};
use cachemir_compiler::passes::decompose::Decompose;
use cachemir_compiler::passes::{Pass, Pipeline, Recognize, Rewrite};
use cachemir_compiler::report::{PlanReport, ReportOptions};
use cachemir_compiler::schedule::schedule;
use cachemir_ir::plan::{CostModel, Plan};

use super::model;
use crate::exit::input_error;

/// What the demo compiles for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The parameter set: `N16BootFull` (128-bit) or `ToyBootN12` (insecure).
    pub params: &'static str,
    /// Slots per ciphertext.
    pub slots: usize,
    /// Tokens the plan's KV cache holds (prompt and generated).
    pub max_context: usize,
    /// Squaring steps of each encrypted softmax.
    pub softmax_squarings: u32,
}

/// What compiling produced, for the demo's output.
#[derive(Debug)]
pub struct Compiled {
    pub plan: Plan,
    /// Bootstrap sites the placement chose.
    pub bootstrap_sites: usize,
    /// One line on the placement (exact, state-capped or the greedy fallback).
    pub placement: String,
    pub seconds: f64,
}

/// Compiles the model in `model_dir` (as [`model::write_to`] writes it) for `target` and writes
/// the plan to `plan_path`, its weights beside it as `weights_file`.
///
/// # Errors
/// An input error for a context the calibration does not fit; compiler failures otherwise (the
/// embedded model compiles at the default options).
pub fn compile(
    model_dir: &Path,
    target: &Target,
    plan_path: &Path,
    weights_file: &str,
) -> Result<Compiled> {
    let start = Instant::now();
    let failed =
        |what: &str, e: &dyn std::fmt::Display| anyhow!("compiling the demo model: {what}: {e}");
    let options = cachemir_onnx::ImportOptions {
        decode_context: Some(target.max_context),
        ..Default::default()
    };
    let mut graph = cachemir_onnx::import_file(&model_dir.join(model::ONNX), &options)
        .map_err(|e| failed("import", &e))?
        .graph;
    graph
        .encrypt_from(model::ENCRYPT_FROM)
        .map_err(|e| failed("--encrypt-from", &e))?;
    let generation = generation_step(&mut graph, target.max_context)
        .map_err(|e| input_error(anyhow!("--max-context {}: {e}", target.max_context)))?;
    let mut calibration = Calibration::load(&model_dir.join(model::CALIBRATION))
        .map_err(|e| failed("calibration", &e))?;
    generation_calibration(&mut calibration, &generation, &graph)
        .map_err(|e| input_error(anyhow!("--max-context {}: {e}", target.max_context)))?;
    Pipeline::new()
        .with(Recognize)
        .with(Rewrite::default())
        .with(Decompose {
            softmax_squarings: target.softmax_squarings,
        })
        .with(Calibrate { calibration })
        .run(&mut graph, None, &[], &mut |_, _| {})
        .map_err(|e| failed("tensor-level passes", &e))?;
    Approximate::default()
        .run(&mut graph)
        .map_err(|e| failed("approximate", &e))?;
    let lowered = lower(
        &graph,
        &LowerOptions {
            slots: target.slots,
            period: None,
            weights_file: weights_file.to_string(),
        },
    )
    .map_err(|e| failed("lowering", &e))?;
    let parameters = params::by_name(target.params)
        .ok_or_else(|| anyhow!("unknown parameter set {}", target.params))?;
    let leveled = assign_levels(
        &dedupe(&lowered.plan).0,
        &|site| calibrated_bound(&graph, site),
        &LevelOptions::new(parameters),
    )
    .map_err(|e| failed("levels", &e))?;
    let mut plan = schedule(&leveled.plan)
        .map_err(|e| failed("schedule", &e))?
        .plan;
    plan.generation = Some(generation);
    plan.validate().map_err(|e| failed("validate", &e))?;

    let dir = plan_path.parent().unwrap_or(Path::new("."));
    write_weights(&lowered, &graph, &dir.join(weights_file))
        .map_err(|e| anyhow!("writing the weights: {e}"))?;
    // Written under another name and renamed: a plan file in the work folder is a whole one.
    let partial = plan_path.with_extension("plan.partial");
    std::fs::write(&partial, plan.to_bytes()?)
        .with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, plan_path)
        .with_context(|| format!("writing {}", plan_path.display()))?;
    let p = &leveled.placement;
    Ok(Compiled {
        bootstrap_sites: p.bootstraps(),
        placement: if p.greedy_fallback {
            "greedy waterline (the KV-aware search found none)".into()
        } else if p.exact {
            "KV-aware, exact".into()
        } else {
            "KV-aware, state-capped".into()
        },
        plan,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// The report summary of `plan` (`cachemirc report` has the whole report): bootstraps per token
/// and by layer, rotation keys and their bytes, peak ciphertext memory, KV-cache ciphertexts and
/// the estimated latency per token under the built-in CPU cost model.
///
/// # Errors
/// A plan that breaks its level rules (a compiler bug).
pub fn report_summary(plan: &Plan) -> Result<(String, PlanReport)> {
    let report = PlanReport::new(plan, &CostModel::default_cpu(), &ReportOptions::default())
        .map_err(|e| anyhow!("the demo plan's report: {e}"))?;
    let gib = |bytes: u64| bytes as f64 / f64::from(1u32 << 30);
    let mut by_layer = std::collections::BTreeMap::<Option<u32>, usize>::new();
    for b in &report.bootstraps {
        *by_layer.entry(b.layer).or_default() += 1;
    }
    let layers: Vec<String> = by_layer
        .iter()
        .map(|(layer, n)| match layer {
            Some(l) => format!("layer {l}: {n}"),
            None => format!("outside layers: {n}"),
        })
        .collect();
    let mut lines = vec![format!(
        "  bootstraps per token: {} ({})",
        report.bootstraps.len(),
        layers.join(", ")
    )];
    let keys = &report.keys;
    let rotation_bytes: u64 = keys.rotations.iter().filter_map(|k| k.bytes).sum();
    lines.push(format!(
        "  rotation keys: {} ({:.2} GiB, {} rotation steps); relinearization key {}; the plan's \
         keys {:.2} GiB (bootstrapping keys come on top)",
        keys.rotations.len(),
        gib(rotation_bytes),
        keys.rotation_steps,
        keys.relinearization
            .as_ref()
            .and_then(|r| r.level)
            .map_or("none".into(), |l| format!("up to level {l}")),
        gib(keys.total_bytes.unwrap_or(0))
    ));
    lines.push(format!(
        "  peak: {} live ciphertexts{}",
        report.memory.peak_ciphertexts,
        report
            .memory
            .peak_bytes
            .map_or(String::new(), |b| format!(" ({:.2} GiB)", gib(b)))
    ));
    if let Some(decode) = &report.decode {
        lines.push(format!(
            "  KV cache: {} states in {} ciphertexts{}",
            decode.states,
            decode.state_ciphertexts,
            decode.state_bytes.map_or(String::new(), |b| format!(
                " ({:.1} MiB)",
                b as f64 / 1048576.0
            ))
        ));
        lines.push(format!(
            "  estimated latency: {:.1} s per token ({})",
            decode.latency_ms_per_token / 1e3,
            report.latency.cost_model
        ));
    }
    for warning in &report.warnings {
        lines.push(format!("  note: {warning}"));
    }
    Ok((lines.join("\n"), report))
}
