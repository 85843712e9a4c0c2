//! `calibrate`: runs the reference interpreter on calibration inputs and records, for every
//! float value, the `[min, max]` it takes over the set (`Graph::calibrated_range`). The
//! polynomial domains, Newton starts and bootstrap pre-scaling are derived from these ranges.
//!
//! Softmax shifts (see [`super::decompose`]) are set to the calibrated maximum of the scores
//! they shift, and the ranges measured again with the shifts in place.

use super::decompose::SOFTMAX_SHIFT;
use super::{CompileError, Pass};
use crate::reference::Case;
use cachemir_ir::interp::Value;
use cachemir_ir::{Graph, Interpreter, Op, Precision, Tensor, ValueRef};
use ndarray::Axis;
use std::collections::HashMap;
use std::path::Path;

/// Calibration inputs: one complete set of graph inputs per sample.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub samples: Vec<HashMap<String, Tensor>>,
}

impl Calibration {
    /// Keeps the first `count` samples (a quicker, rougher calibration).
    pub fn truncated(mut self, count: usize) -> Self {
        self.samples.truncate(count.max(1));
        self
    }

    /// Reads a calibration file in the format of `../shared/models/*/calib.json`: each input's
    /// `.npy` stacks the samples on a new leading axis.
    ///
    /// # Errors
    /// [`CompileError::Calibration`] for unreadable files or inputs with different sample counts.
    pub fn load(path: &Path) -> Result<Self, CompileError> {
        let stacked = Case::load(path).map_err(|e| CompileError::Calibration(e.to_string()))?;
        let counts: Vec<usize> = stacked
            .inputs
            .values()
            .map(|t| t.shape().first().copied().unwrap_or(0))
            .collect();
        let count = counts.first().copied().unwrap_or(0);
        if count == 0 || counts.iter().any(|&c| c != count) {
            return Err(CompileError::Calibration(format!(
                "{}: inputs must stack the same number (≥ 1) of samples on axis 0, found {counts:?}",
                path.display()
            )));
        }
        let samples = (0..count)
            .map(|i| {
                stacked
                    .inputs
                    .iter()
                    .map(|(name, t)| (name.clone(), sample(t, i)))
                    .collect()
            })
            .collect();
        Ok(Self { samples })
    }
}

/// Sample `i` of a stacked tensor.
fn sample(t: &Tensor, i: usize) -> Tensor {
    match t {
        Tensor::F32(a) => Tensor::F32(a.index_axis(Axis(0), i).to_owned()),
        Tensor::F64(a) => Tensor::F64(a.index_axis(Axis(0), i).to_owned()),
        Tensor::I64(a) => Tensor::I64(a.index_axis(Axis(0), i).to_owned()),
        Tensor::Bool(a) => Tensor::Bool(a.index_axis(Axis(0), i).to_owned()),
    }
}

/// The calibrate pass.
#[derive(Debug)]
pub struct Calibrate {
    pub calibration: Calibration,
}

impl Pass for Calibrate {
    fn name(&self) -> &'static str {
        "calibrate"
    }

    fn run(&mut self, graph: &mut Graph) -> Result<String, CompileError> {
        let ranges = self.measure(graph)?;
        let shifts = set_softmax_shifts(graph, &ranges);
        let ranges = if shifts > 0 {
            self.measure(graph)?
        } else {
            ranges
        };
        for node in graph.node_indices() {
            graph.node_mut(node).calibrated_ranges.clear();
        }
        for (&value, &range) in &ranges {
            graph.set_calibrated_range(value, Some(range));
        }
        Ok(format!(
            "{} samples, {} value ranges, {shifts} softmax shifts",
            self.calibration.samples.len(),
            ranges.len()
        ))
    }
}

impl Calibrate {
    /// `[min, max]` of every float value over all samples (non-finite values are ignored: they
    /// only occur in public masks).
    fn measure(&self, graph: &Graph) -> Result<HashMap<ValueRef, (f64, f64)>, CompileError> {
        let wanted: std::collections::HashSet<&str> =
            graph.inputs().iter().map(|i| graph.input_name(i)).collect();
        let interpreter = Interpreter::new(graph, Precision::F64);
        let mut ranges: HashMap<ValueRef, (f64, f64)> = HashMap::new();
        for (index, sample) in self.calibration.samples.iter().enumerate() {
            let inputs: HashMap<String, Tensor> = sample
                .iter()
                .filter(|(n, _)| wanted.contains(n.as_str()))
                .map(|(n, t)| (n.clone(), t.clone()))
                .collect();
            let mut record = |v: ValueRef, value: &Value| {
                if let Some((lo, hi)) = value.finite_range() {
                    let entry = ranges.entry(v).or_insert((lo, hi));
                    *entry = (entry.0.min(lo), entry.1.max(hi));
                }
            };
            interpreter
                .run_observed(&inputs, &[], &mut record)
                .map_err(|e| CompileError::Calibration(format!("sample {index}: {e}")))?;
        }
        Ok(ranges)
    }
}

/// Sets every softmax shift constant to the calibrated maximum of the scores it is subtracted
/// from; returns how many were set.
fn set_softmax_shifts(graph: &mut Graph, ranges: &HashMap<ValueRef, (f64, f64)>) -> usize {
    let mut count = 0;
    for node in graph.node_indices() {
        let n = graph.node(node);
        if !n.output_names[0].contains(SOFTMAX_SHIFT) || !matches!(n.op, Op::Constant(_)) {
            continue;
        }
        let Some(&user) = graph.users(node).first() else {
            continue;
        };
        let Some(scores) = graph.operands(user).first().copied() else {
            continue;
        };
        let Some(&(_, max)) = ranges.get(&scores) else {
            continue;
        };
        let dtype = n.outputs[0].dtype;
        let shift = match dtype {
            cachemir_ir::DType::F64 => Tensor::F64(ndarray::arr0(max).into_dyn()),
            _ => Tensor::F32(ndarray::arr0(max as f32).into_dyn()),
        };
        graph.node_mut(node).op = Op::Constant(shift);
        count += 1;
    }
    count
}

/// Ranges for shape-only compilation, where no calibration data exists (e.g. Llama-3-8B with
/// `weights none`): every float value is assumed in `[−bound, bound]`, and values under a
/// reciprocal, inverse square root, square root or logarithm in `positive`. The plan is then
/// right in cost (depth, rotations, bootstraps), not in accuracy.
#[derive(Debug, Clone, Copy)]
pub struct AssumeRanges {
    pub bound: f64,
    pub positive: (f64, f64),
}

impl Default for AssumeRanges {
    fn default() -> Self {
        // Norm denominators of a trained model stay within about two decades (the tiny
        // decoders' calibrated RMSNorm inputs span [0.09, 3.6]).
        Self {
            bound: 8.0,
            positive: (0.125, 4.0),
        }
    }
}

impl Pass for AssumeRanges {
    fn name(&self) -> &'static str {
        "assume_ranges"
    }

    fn run(&mut self, graph: &mut Graph) -> Result<String, CompileError> {
        use cachemir_ir::UnaryOp;
        let mut count = 0;
        for node in graph.node_indices() {
            let positive = graph.users(node).iter().any(|&u| {
                matches!(
                    graph.node(u).op,
                    Op::Unary(UnaryOp::Rsqrt | UnaryOp::Reciprocal | UnaryOp::Sqrt | UnaryOp::Log)
                )
            });
            let outputs = graph.node(node).outputs.len();
            for output in 0..outputs {
                let value = ValueRef { node, output };
                let float = graph.value_type(value).is_some_and(|t| {
                    matches!(t.dtype, cachemir_ir::DType::F32 | cachemir_ir::DType::F64)
                });
                if float && graph.calibrated_range(value).is_none() {
                    let range = if positive {
                        self.positive
                    } else {
                        (-self.bound, self.bound)
                    };
                    graph.set_calibrated_range(value, Some(range));
                    count += 1;
                }
            }
        }
        Ok(format!(
            "{count} value ranges assumed: [−{b}, {b}], [{}, {}] under 1/x, 1/√x, √x, log",
            self.positive.0,
            self.positive.1,
            b = self.bound,
        ))
    }
}
