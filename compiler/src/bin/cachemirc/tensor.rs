//! The tensor-level passes of `cachemirc compile`: `recognize`, `rotate_residual`, `rewrite`
//! once, then `decompose`, `calibrate` and `approximate` with the softmax squaring count given
//! or, with `--softmax-squarings auto`, the smallest that compiles
//! ([`cachemir_compiler::passes::squarings`]).

use crate::args::{CompileArgs, RotateResidualArg, Squarings};
use crate::error::input_error;
use anyhow::Result;
use cachemir_compiler::passes::approximate::{
    Approximate, ApproximationOptions, ApproximationSite,
};
use cachemir_compiler::passes::calibrate::{AssumeRanges, Calibrate, Calibration};
use cachemir_compiler::passes::decompose::Decompose;
use cachemir_compiler::passes::rotate_residual::RotateResidual;
use cachemir_compiler::passes::squarings::{
    SQUARING_CANDIDATES, check_in_domain, smallest_softmax_squarings,
};
use cachemir_compiler::passes::{CompileError, Pass, PassRecord, Pipeline, Recognize, Rewrite};
use cachemir_ir::printer::print_graph;
use cachemir_ir::{Graph, Tensor};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The passes before `decompose`: their result does not depend on the squaring count.
const PREFIX: [&str; 3] = ["recognize", "rotate_residual", "rewrite"];

/// What the tensor-level passes did.
pub(crate) struct TensorPasses {
    pub(crate) records: Vec<PassRecord>,
    /// The rewrite pass's report (cost before and after), when it ran.
    pub(crate) rewrite_report: Option<String>,
    /// Every approximated site, when `approximate` ran.
    pub(crate) approximations: Option<Vec<ApproximationSite>>,
    /// How `--softmax-squarings auto` chose the count (`None` for a given count).
    pub(crate) squarings: Option<String>,
}

/// Runs the tensor-level passes on `graph` as `args` asks (`--stop-after`, `--dump-after`,
/// `--softmax-squarings`), calibrating with `calibration` or `--assume-range`. With `auto`, a
/// squaring count is accepted only when the calibration samples and `reference` (the
/// `--sample` case's inputs) evaluate inside every approximation's domain
/// ([`check_in_domain`]).
///
/// # Errors
/// An input error for an unknown pass name, missing calibration data, or a pass that fails
/// (with `auto`: every candidate squaring count's failure).
pub(crate) fn run(
    graph: &mut Graph,
    args: &CompileArgs,
    calibration: Option<Calibration>,
    reference: Option<&HashMap<String, Tensor>>,
) -> Result<TensorPasses> {
    let stop_after = args.stop_after.as_deref();
    let needs_calibration =
        !matches!(stop_after, Some(p) if PREFIX.contains(&p) || p == "decompose");
    let calibrates = calibration.is_some() || args.assume_range.is_some();
    if needs_calibration && !calibrates {
        return Err(input_error(anyhow::anyhow!(
            "--calibration CALIB.json (or --assume-range B for a shape-only model) is needed for `calibrate` and `approximate` (or stop earlier with --stop-after decompose)"
        )));
    }
    let samples = calibration.as_ref().map(|c| c.samples.clone());
    let tail = Tail {
        ranges: match (calibration, args.assume_range) {
            (Some(calibration), _) => Some(Ranges::Calibrated(calibration)),
            (None, Some(bound)) => Some(Ranges::Assumed(bound)),
            (None, None) => None,
        },
        approximation: ApproximationOptions {
            precision_bits: args.precision_bits,
            margin: args.margin,
            ..Default::default()
        },
    };

    let mut prefix = Pipeline::new().with(Recognize);
    if let Some(RotateResidualArg::Hadamard) = args.rotate_residual {
        prefix = prefix
            .with(RotateResidual::new(args.seed).with_samples(samples.clone().unwrap_or_default()));
    }
    let rewrite = Rc::new(RefCell::new(Rewrite::default()));
    prefix = prefix.with(SharedPass(rewrite.clone()));
    let tail_names = tail.pipeline(0).0.names();
    let prefix_names = prefix.names();
    let all: Vec<&str> = prefix_names.iter().chain(&tail_names).copied().collect();
    for name in stop_after
        .into_iter()
        .chain(args.dump_after.iter().map(String::as_str))
    {
        if !all.contains(&name) {
            return Err(input_error(CompileError::UnknownPass(
                name.to_string(),
                all.join(", "),
            )));
        }
    }
    let among = |names: &[&str]| -> Vec<String> {
        args.dump_after
            .iter()
            .filter(|d| names.contains(&d.as_str()))
            .cloned()
            .collect()
    };
    let mut dump = |pass: &str, g: &Graph| eprintln!("== IR after {pass}\n{}", print_graph(g));
    let prefix_stop = stop_after.filter(|p| prefix_names.contains(p));
    let mut records = prefix
        .run(graph, prefix_stop, &among(&prefix_names), &mut dump)
        .map_err(input_error)?;
    let rewrite_report = rewrite.borrow().report.as_ref().map(ToString::to_string);
    let mut passes = TensorPasses {
        records: Vec::new(),
        rewrite_report,
        approximations: None,
        squarings: None,
    };
    if prefix_stop.is_some() {
        passes.records = records;
        return Ok(passes);
    }

    let tail_dumps = among(&tail_names);
    let fixed = match args.softmax_squarings {
        Squarings::Fixed(k) => Some((k, None)),
        // Without calibration nothing can be approximated, so nothing tells the counts apart.
        Squarings::Auto if !calibrates => {
            let k = Decompose::default().softmax_squarings;
            Some((
                k,
                Some(format!(
                    "softmax squarings: {k} (`auto` needs calibration to try `approximate`)"
                )),
            ))
        }
        Squarings::Auto => None,
    };
    if let Some((k, line)) = fixed {
        let (mut pipeline, approximate) = tail.pipeline(k);
        records.extend(
            pipeline
                .run(graph, stop_after, &tail_dumps, &mut dump)
                .map_err(input_error)?,
        );
        passes.records = records;
        passes.approximations = approximate.map(|a| std::mem::take(&mut a.borrow_mut().sites));
        passes.squarings = line;
        return Ok(passes);
    }

    // Every attempt runs through `approximate`; dumps and the `--stop-after` graph are kept
    // aside and only the chosen attempt's are used.
    let mut watched = tail_dumps.clone();
    watched.extend(stop_after.map(str::to_string));
    let choice = smallest_softmax_squarings(graph, SQUARING_CANDIDATES, |k, g| {
        let (mut pipeline, approximate) = tail.pipeline(k);
        let mut dumps = Vec::new();
        let mut stopped = None;
        let records = pipeline.run(g, None, &watched, &mut |pass, g| {
            if tail_dumps.iter().any(|d| d == pass) {
                dumps.push(format!("== IR after {pass}\n{}", print_graph(g)));
            }
            if stop_after == Some(pass) {
                stopped = Some(g.clone());
            }
        })?;
        let cases = samples
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| (format!("calibration sample {i}"), s))
            .chain(reference.map(|r| ("the --sample case".to_string(), r)));
        check_in_domain(g, cases)?;
        let sites = approximate.map(|a| std::mem::take(&mut a.borrow_mut().sites));
        Ok((records, sites, dumps, stopped))
    })
    .map_err(input_error)?;
    let line = choice.summary();
    let (tail_records, sites, dumps, stopped) = choice.outcome;
    for d in dumps {
        eprintln!("{d}");
    }
    let end = stop_after
        .and_then(|s| tail_records.iter().position(|r| r.name == s))
        .map_or(tail_records.len(), |i| i + 1);
    let stopped_early = end < tail_records.len();
    records.extend(tail_records.into_iter().take(end));
    *graph = match stopped {
        Some(g) => g,
        None => choice.graph,
    };
    passes.records = records;
    passes.approximations = if stopped_early { None } else { sites };
    passes.squarings = Some(line);
    Ok(passes)
}

/// The K-dependent passes: `decompose`, then (given ranges) `calibrate` or assumed ranges and
/// `approximate`.
struct Tail {
    ranges: Option<Ranges>,
    approximation: ApproximationOptions,
}

/// Where value ranges come from.
enum Ranges {
    /// `--calibration`: the reference interpreter over the samples.
    Calibrated(Calibration),
    /// `--assume-range B`.
    Assumed(f64),
}

impl Tail {
    /// The pipeline for `k` squarings, and its `approximate` pass to read the sites from.
    fn pipeline(&self, k: u32) -> (Pipeline, Option<Rc<RefCell<Approximate>>>) {
        let pipeline = Pipeline::new().with(Decompose {
            softmax_squarings: k,
        });
        let pipeline = match &self.ranges {
            None => return (pipeline, None),
            Some(Ranges::Calibrated(calibration)) => pipeline.with(Calibrate {
                calibration: calibration.clone(),
            }),
            Some(Ranges::Assumed(bound)) => pipeline.with(AssumeRanges {
                bound: *bound,
                ..Default::default()
            }),
        };
        let approximate = Rc::new(RefCell::new(Approximate {
            options: self.approximation,
            sites: Vec::new(),
        }));
        (
            pipeline.with(SharedPass(approximate.clone())),
            Some(approximate),
        )
    }
}

/// A pass shared with the caller, who reads its results after the pipeline ran.
struct SharedPass<P>(Rc<RefCell<P>>);

impl<P: Pass> Pass for SharedPass<P> {
    fn name(&self) -> &'static str {
        self.0.borrow().name()
    }

    fn run(&mut self, graph: &mut Graph) -> Result<String, CompileError> {
        self.0.borrow_mut().run(graph)
    }
}
