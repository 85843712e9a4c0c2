//! How many times every encrypted softmax squares and renormalises ([`Decompose::
//! softmax_squarings`], K): the smallest K for which `decompose`, `calibrate` and `approximate`
//! all succeed, and the approximated graph evaluates the calibration samples and the reference
//! case inside every approximation's domain ([`check_in_domain`]).
//!
//! Why the smallest: each squaring adds a ct-ct square and a reciprocal (a polynomial start and
//! Newton iterations, about 10 levels) to every softmax, so fewer squarings mean fewer levels
//! and fewer bootstraps. Squarings exist only to narrow the first reciprocal's domain to a
//! factor `e^(spread / 2^K)` (see [`super::decompose`]); K is too small exactly when
//! `approximate` cannot fit an approximation to a domain (typically "too wide for
//! Reciprocal"), and the search says so for each K it rejects. Measured on the tiny Llama
//! generation plan (N16BootFull, 2,048 slots, 16 tokens of context): K = 3 gives 50
//! bootstrapped ciphertexts and an estimated 1,194 s per token, K = 2 gives 37 and 919 s with
//! the same greedy tokens, K = 0 and K = 1 fail in `approximate`.
//!
//! [`Decompose::softmax_squarings`]: super::decompose::Decompose::softmax_squarings

use super::CompileError;
use cachemir_ir::{Graph, Interpreter, Op, Precision, Tensor, ValueRef};
use std::collections::HashMap;
use std::fmt::Write;
use std::ops::RangeInclusive;
use thiserror::Error;

/// The squaring counts the search tries by default: `0..=4`. Beyond 4 the exponent's domain
/// shrinks by 2^4 = 16 already, and each further step costs about 12 levels per softmax.
pub const SQUARING_CANDIDATES: RangeInclusive<u32> = 0..=4;

/// A squaring count the search rejected, and the error of the pass that failed with it.
#[derive(Debug)]
pub struct Rejected {
    pub squarings: u32,
    pub error: CompileError,
}

/// The chosen squaring count, the graph compiled with it and what the caller's attempt returned.
#[derive(Debug)]
pub struct SquaringChoice<T> {
    /// The smallest K that compiled.
    pub squarings: u32,
    /// The smaller K that failed, in increasing order.
    pub rejected: Vec<Rejected>,
    /// Whether the graph has an encrypted softmax at all (without one, every K gives the same
    /// graph and only the first candidate was tried).
    pub has_softmax: bool,
    /// The graph after the successful attempt.
    pub graph: Graph,
    /// What the successful attempt returned (e.g. its pass records).
    pub outcome: T,
}

impl<T> SquaringChoice<T> {
    /// One line for the compile summary: the chosen K and why each smaller one was rejected.
    pub fn summary(&self) -> String {
        let mut line = format!("softmax squarings: {} (auto", self.squarings);
        if !self.has_softmax {
            line.push_str(": no encrypted softmax)");
            return line;
        }
        if self.rejected.is_empty() {
            line.push_str(": the smallest candidate compiles)");
            return line;
        }
        line.push_str("; rejected ");
        for (i, r) in self.rejected.iter().enumerate() {
            let separator = if i == 0 { "" } else { "; " };
            let _ = write!(line, "{separator}K = {}: {}", r.squarings, r.error);
        }
        line.push(')');
        line
    }
}

/// No candidate squaring count compiled.
#[derive(Debug, Error)]
#[error("no softmax squaring count in {}..={} compiles: {}", .candidates.start(), .candidates.end(),
    .rejected.iter().map(|r| format!("K = {}: {}", r.squarings, r.error)).collect::<Vec<_>>().join("; "))]
pub struct NoSquaringCompiles {
    pub candidates: RangeInclusive<u32>,
    pub rejected: Vec<Rejected>,
}

/// Whether `graph` holds a softmax (or an attention, which decomposes into one) on encrypted
/// data: the only ops whose decomposition depends on K.
pub fn has_encrypted_softmax(graph: &Graph) -> bool {
    graph.node_indices().into_iter().any(|node| {
        matches!(
            graph.node(node).op,
            Op::Softmax { .. } | Op::Attention { .. }
        ) && super::computed_on_ciphertexts(graph, ValueRef { node, output: 0 })
    })
}

/// Runs `attempt(K, graph)` on a copy of `graph` for each K in `candidates`, in increasing
/// order, and returns the first that succeeds. `attempt` runs the K-dependent passes
/// (`decompose` with K squarings, then `calibrate` and `approximate`, as
/// [`super::Pipeline`]); a graph without an encrypted softmax is tried with the first candidate
/// only, since K changes nothing there.
///
/// Cost: up to `candidates.len()` runs of those passes when the graph does not compile at all.
///
/// # Errors
/// [`NoSquaringCompiles`] with every candidate's error when none compiles.
pub fn smallest_softmax_squarings<T>(
    graph: &Graph,
    candidates: RangeInclusive<u32>,
    mut attempt: impl FnMut(u32, &mut Graph) -> Result<T, CompileError>,
) -> Result<SquaringChoice<T>, NoSquaringCompiles> {
    let has_softmax = has_encrypted_softmax(graph);
    let tried: Vec<u32> = if has_softmax {
        candidates.clone().collect()
    } else {
        candidates.clone().take(1).collect()
    };
    let mut rejected = Vec::new();
    for squarings in tried {
        let mut copy = graph.clone();
        match attempt(squarings, &mut copy) {
            Ok(outcome) => {
                return Ok(SquaringChoice {
                    squarings,
                    rejected,
                    has_softmax,
                    graph: copy,
                    outcome,
                });
            }
            Err(error) => rejected.push(Rejected { squarings, error }),
        }
    }
    Err(NoSquaringCompiles {
        candidates,
        rejected,
    })
}

/// Checks that the approximated `graph` evaluates every one of `cases` (name, inputs) with the
/// reference interpreter (f64) without leaving an approximation's domain: the safety check of
/// `--softmax-squarings auto`. A small K keeps the first reciprocal's domain just wide enough for
/// the calibration samples (widened by the margin), and an input whose softmax denominator lies
/// beyond them makes the polynomial start diverge (measured: the tiny GPT-2 decode step with
/// K = 1 or 2, its reference case 0 reaching 8.68 against a domain of [0.245, 7.15] and 11.46
/// against [0.571, 11.05]); K is accepted only when the calibration samples and the reference
/// case (`--sample`) evaluate in range on the graph as it will be lowered. Inputs a case gives
/// that the graph does not take are ignored, and a case whose input shapes are not the graph's
/// is skipped.
///
/// Cost: one interpreter run per case.
///
/// # Errors
/// [`CompileError::Calibration`] naming the first case that fails and the interpreter's error
/// (the node, the value and the domain).
pub fn check_in_domain<'a>(
    graph: &Graph,
    cases: impl IntoIterator<Item = (String, &'a HashMap<String, Tensor>)>,
) -> Result<(), CompileError> {
    let shapes: HashMap<&str, &[usize]> = graph
        .inputs()
        .iter()
        .map(|i| (graph.input_name(i), graph.input_type(i).shape.as_slice()))
        .collect();
    let interpreter = Interpreter::new(graph, Precision::F64);
    for (name, case) in cases {
        let inputs: HashMap<String, Tensor> = case
            .iter()
            .filter(|(n, _)| shapes.contains_key(n.as_str()))
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        // A case for another binding (e.g. a decode-step case for a generation plan's longer
        // cache) says nothing about this graph.
        if inputs.iter().any(|(n, t)| shapes[n.as_str()] != t.shape()) {
            continue;
        }
        interpreter.run(&inputs).map_err(|e| {
            CompileError::Calibration(format!("{name} evaluates out of range: {e}"))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::passes::approximate::Approximate;
    use crate::passes::calibrate::{Calibrate, Calibration};
    use crate::passes::decompose::Decompose;
    use crate::passes::{PassRecord, Pipeline};
    use cachemir_ir::{
        DType, InputRole, OutputRole, Secrecy, SourceLocation, Tensor, TensorType, UnaryOp,
    };
    use ndarray::{ArrayD, IxDyn};
    use std::collections::HashMap;

    /// `softmax(x)` over the last axis of an encrypted `[rows, 8]` input, and `exp(x)` when
    /// `softmax` is false.
    fn graph(rows: usize, softmax: bool) -> Graph {
        let here = || SourceLocation::Synthetic("test".into());
        let mut g = Graph::new("softmax");
        let x = g.add_input(
            "x",
            TensorType::new(DType::F64, vec![rows, 8], Secrecy::Encrypted),
            InputRole::Input,
            here(),
        );
        let op = if softmax {
            Op::Softmax { axis: -1 }
        } else {
            Op::Unary(UnaryOp::Exp)
        };
        let y = g.add_node(op, &[x], vec!["y".into()], here()).unwrap()[0];
        g.add_output("y", y, OutputRole::Output);
        g
    }

    /// Two rows 30 apart: the shared shift (the calibrated maximum) leaves the second row's
    /// exponentials near e^(−30 / 2^K), and the first denominator's domain that wide.
    fn calibration() -> Calibration {
        let row = |base: f64| (0..8).map(move |i| base + 0.25 * f64::from(i));
        let values: Vec<f64> = row(30.0).chain(row(0.0)).collect();
        let x = Tensor::F64(ArrayD::from_shape_vec(IxDyn(&[2, 8]), values).unwrap());
        Calibration {
            samples: vec![HashMap::from([("x".to_string(), x)])],
        }
    }

    fn attempt(k: u32, g: &mut Graph) -> Result<Vec<PassRecord>, CompileError> {
        Pipeline::new()
            .with(Decompose {
                softmax_squarings: k,
            })
            .with(Calibrate {
                calibration: calibration(),
            })
            .with(Approximate::default())
            .run(g, None, &[], &mut |_, _| {})
    }

    #[test]
    fn the_smallest_count_whose_reciprocal_domain_fits_is_chosen() {
        let choice = smallest_softmax_squarings(&graph(2, true), SQUARING_CANDIDATES, attempt)
            .expect("some K compiles");
        // e^(−30/4) ≈ 5.5e-4 is still too wide for a degree-31 start; e^(−30/8) ≈ 0.024 is not.
        assert_eq!(choice.squarings, 3);
        let rejected: Vec<u32> = choice.rejected.iter().map(|r| r.squarings).collect();
        assert_eq!(rejected, [0, 1, 2]);
        for r in &choice.rejected {
            assert!(
                r.error.to_string().contains("too wide for Reciprocal"),
                "K = {}: {}",
                r.squarings,
                r.error
            );
        }
        let reciprocals = choice.graph.op_histogram().get("Reciprocal").copied();
        assert_eq!(reciprocals, None, "every reciprocal was approximated");
        assert!(
            choice
                .summary()
                .starts_with("softmax squarings: 3 (auto; rejected K = 0: ")
        );
        // One row: the shift is that row's maximum, the denominator lies in [1, 8].
        let one_row = smallest_softmax_squarings(&graph(1, true), SQUARING_CANDIDATES, |k, g| {
            let mut c = calibration();
            let x = c.samples[0]["x"].to_f64();
            let row = x.slice(ndarray::s![1..2, ..]).to_owned().into_dyn();
            c.samples[0].insert("x".into(), Tensor::F64(row));
            Pipeline::new()
                .with(Decompose {
                    softmax_squarings: k,
                })
                .with(Calibrate { calibration: c })
                .with(Approximate::default())
                .run(g, None, &[], &mut |_, _| {})
        })
        .unwrap();
        assert_eq!(one_row.squarings, 0);
        assert!(one_row.rejected.is_empty());
    }

    #[test]
    fn an_input_beyond_the_calibrated_denominators_fails_the_domain_check() {
        let choice = smallest_softmax_squarings(&graph(2, true), SQUARING_CANDIDATES, attempt)
            .expect("some K compiles");
        let samples = calibration().samples;
        let named = samples.iter().map(|c| ("sample".to_string(), c));
        check_in_domain(&choice.graph, named).expect("the calibration is in range");
        // Row 1 with every entry at its maximum: the first denominator 8·e^0 = 8 after the
        // shift, beyond the calibrated 1 + e^(−0.25/8) + … ≈ 7.3 widened by 10%.
        let x = Tensor::F64(
            ArrayD::from_shape_vec(
                IxDyn(&[2, 8]),
                (0..8)
                    .map(|i| 30.0 + 0.25 * f64::from(i))
                    .chain([31.75; 8])
                    .collect(),
            )
            .unwrap(),
        );
        let beyond = HashMap::from([("x".to_string(), x)]);
        let error = check_in_domain(&choice.graph, [("the wide case".to_string(), &beyond)])
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("calibration: the wide case evaluates out of range")
                && error.contains("outside"),
            "{error}"
        );
        // A case for other shapes is skipped.
        let other = HashMap::from([("x".to_string(), Tensor::F64(ArrayD::zeros(IxDyn(&[3, 8]))))]);
        check_in_domain(&choice.graph, [("other".to_string(), &other)]).unwrap();
    }

    #[test]
    fn a_graph_without_softmax_is_tried_once_and_failures_are_all_reported() {
        let mut tried = Vec::new();
        let choice = smallest_softmax_squarings(&graph(2, false), 1..=4, |k, _| {
            tried.push(k);
            Ok(())
        })
        .unwrap();
        assert_eq!((choice.squarings, tried.as_slice()), (1, &[1][..]));
        assert_eq!(
            choice.summary(),
            "softmax squarings: 1 (auto: no encrypted softmax)"
        );

        let error = smallest_softmax_squarings(&graph(2, true), 0..=2, |k, _| {
            Err::<(), _>(CompileError::Calibration(format!("no samples for K = {k}")))
        })
        .unwrap_err();
        assert_eq!(error.rejected.len(), 3);
        assert_eq!(
            error.to_string(),
            "no softmax squaring count in 0..=2 compiles: K = 0: calibration: no samples for \
             K = 0; K = 1: calibration: no samples for K = 1; K = 2: calibration: no samples \
             for K = 2"
        );
    }
}
