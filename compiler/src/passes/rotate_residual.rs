//! `rotate_residual` (`--rotate-residual hadamard`): outlier control by an orthogonal rotation of
//! the residual stream, folded into the weights so that the graph computes the same outputs.
//!
//! Trained transformers carry a few residual channels with very large activations; under CKKS
//! they widen the domains every polynomial approximation must cover. Rotating the residual stream
//! by an orthogonal `Q` spreads such an outlier over all channels (a spike of height `M` in one of
//! `d` channels becomes `±M/√d` everywhere) without changing what the model computes. Park et al.
//! (arXiv 2601.18511) use orthogonal rotations this way for CKKS Llama inference; QuaRot
//! (Ashkboos et al., 2024) and SpinQuant (Liu et al., 2024) use randomised Hadamard rotations
//! against outliers in quantisation. Why the outputs stay equal is SliceGPT's *computational
//! invariance* (Ashkboos et al., 2024, §3): with `h` the residual stream (rows of width `d`)
//!
//! - RMSNorm without scale commutes with `Q`: `‖hQ‖ = ‖h‖` row by row, so
//!   `x/rms(x)` of `hQ` is `(h/rms(h))·Q` (epsilon included: `mean(x²)` does not change);
//! - a norm's scale `w` moves into the weights that read it: `(n ⊙ w)·W = n·(diag(w)·W)`;
//! - a weight `W` reading the rotated norm output becomes `Qᵀ·W` (`QQᵀ = I`), a weight whose
//!   output is added to the stream becomes `W·Q`, and the embedding table `E` becomes `E·Q`.
//!
//! LayerNorm is not invariant (its mean-centering does not commute with `Q`); SliceGPT first folds
//! the centering into the writers, which this pass does not do: it refuses such graphs.
//!
//! `Q = diag(s)·H/√d` with `H` the Sylvester–Hadamard matrix (`d` a power of two) and `s` random
//! signs from `seed`. Products with `Q` are computed by the fast Walsh–Hadamard transform, exactly
//! (up to the final rounding to the weight's element type).
//!
//! The pass runs after `recognize` (it needs [`Op::RmsNorm`]) and before `calibrate`: it finds the
//! stream from the input of the first RMSNorm along `Add(residual, MatMul(z, W))` (and through
//! casts, reshapes and slices that keep the last axis whole), checks that the rotation reaches
//! nothing it cannot fold, and leaves the graph untouched with a [`CompileError`] naming the node
//! otherwise. With samples it measures `max |x|` at every norm input before and after
//! ([`RotateResidual::shrink`]).

use super::{CompileError, Pass, emit};
use cachemir_ir::infer::normalize_axis;
use cachemir_ir::interp::Value;
use cachemir_ir::{
    BinaryOp, DType, Graph, Interpreter, IrError, NodeIndex, Op, Precision, SourceLocation, Tensor,
    ValueRef,
};
use ndarray::{Array2, ArrayD, ArrayViewMut1, Ix2, IxDyn};
use std::collections::{BTreeMap, HashMap, HashSet};

const PASS: &str = "rotate_residual";

/// `max |x|` at one norm input over the samples, before and after the rotation.
#[derive(Debug, Clone, PartialEq)]
pub struct NormRange {
    /// The RMSNorm (its source location).
    pub norm: String,
    pub before: f64,
    pub after: f64,
}

/// The pass. `samples` (complete graph inputs, e.g. the calibration set) are only used to report
/// the range shrink; without them the rotation is applied and nothing is measured.
#[derive(Debug, Clone, Default)]
pub struct RotateResidual {
    /// Seeds the random signs of `Q`; the same seed gives the same rotation.
    pub seed: u64,
    pub samples: Vec<HashMap<String, Tensor>>,
    /// Filled by [`Pass::run`]: one entry per RMSNorm on the residual stream, in graph order
    /// (empty without samples).
    pub shrink: Vec<NormRange>,
}

impl RotateResidual {
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Measures the range shrink on these inputs.
    pub fn with_samples(mut self, samples: Vec<HashMap<String, Tensor>>) -> Self {
        self.samples = samples;
        self
    }
}

impl Pass for RotateResidual {
    fn name(&self) -> &'static str {
        PASS
    }

    fn run(&mut self, graph: &mut Graph) -> Result<String, CompileError> {
        self.shrink.clear();
        let Some(plan) = analyse(graph, self.seed)? else {
            return Ok("no RMSNorm: no residual stream to rotate".into());
        };
        let before = norm_input_maxima(graph, &plan.norms, &self.samples)?;
        // Rewrite a copy, so that a failure leaves the caller's graph as it was.
        let mut rotated = graph.clone();
        let new_norms = apply(&mut rotated, &plan)?;
        rotated.prune(false);
        rotated
            .verify()
            .map_err(|source| CompileError::Ir { pass: PASS, source })?;
        let after = norm_input_maxima(&rotated, &new_norms, &self.samples)?;
        if !self.samples.is_empty() {
            self.shrink = plan
                .norms
                .iter()
                .zip(before.iter().zip(&after))
                .map(|(&norm, (&before, &after))| NormRange {
                    norm: graph.node(norm).source.to_string(),
                    before,
                    after,
                })
                .collect();
        }
        *graph = rotated;
        Ok(self.summary(&plan))
    }
}

impl RotateResidual {
    fn summary(&self, plan: &Plan) -> String {
        let mut text = format!(
            "rotated the residual stream (width {}, seed {}): {} RMSNorms, {} weights folded{}",
            plan.width,
            self.seed,
            plan.norms.len(),
            plan.folds.len(),
            match plan.start {
                Start::Table { .. } => ", embedding table rotated",
                Start::Value(_) => ", rotation inserted at the stream's start",
            }
        );
        if self.shrink.is_empty() {
            text.push_str("; no samples, ranges not measured");
            return text;
        }
        let ranges: Vec<String> = self
            .shrink
            .iter()
            .map(|r| format!("{} {:.3} -> {:.3}", r.norm, r.before, r.after))
            .collect();
        text.push_str("; max|x| at norm inputs: ");
        text.push_str(&ranges.join(", "));
        text
    }
}

/// The orthogonal `Q = diag(s)·H/√d` (`H` Sylvester–Hadamard, symmetric, `H·H = d·I`).
///
/// Activations are row vectors here (`x·W`), so the signs come first: `x·Q = (x ⊙ s)·H/√d`
/// flips channels at random and then mixes them. (With `H·diag(s)` the signs would flip the
/// mixed channels, which changes no `|x_j|`: every seed would give the same ranges.) Written
/// for column vectors it is the usual randomised Hadamard transform `Qᵀ·x = H·diag(s)·x/√d`.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// `s_j/√d`, the row factors of `Q`.
    factors: Vec<f64>,
}

impl Rotation {
    /// The rotation of width `width` with signs from `seed` (splitmix64, one sign per draw);
    /// `None` when `width` is not a power of two.
    pub fn new(width: usize, seed: u64) -> Option<Self> {
        if !width.is_power_of_two() {
            return None;
        }
        let norm = 1.0 / (width as f64).sqrt();
        let mut state = seed;
        let factors = (0..width)
            .map(|_| {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^= z >> 31;
                if z >> 63 == 1 { -norm } else { norm }
            })
            .collect();
        Some(Self { factors })
    }

    pub fn width(&self) -> usize {
        self.factors.len()
    }

    /// `M ← M·Q` for `M` of shape `[n, d]`: column `j` times `s_j/√d`, then `·H` row by row.
    pub fn right_multiply(&self, m: &mut Array2<f64>) {
        for mut row in m.rows_mut() {
            row.iter_mut().zip(&self.factors).for_each(|(x, f)| *x *= f);
            walsh_hadamard(row);
        }
    }

    /// `M ← Qᵀ·M` for `M` of shape `[d, k]` (`Qᵀ = H·diag(s)/√d`): row `j` times `s_j/√d`,
    /// then `H·` column by column.
    pub fn left_multiply_transposed(&self, m: &mut Array2<f64>) {
        for (mut row, f) in m.rows_mut().into_iter().zip(&self.factors) {
            row *= *f;
        }
        for column in m.columns_mut() {
            walsh_hadamard(column);
        }
    }

    /// `Q` as a dense `[d, d]` matrix.
    pub fn matrix(&self) -> Array2<f64> {
        let mut q = Array2::eye(self.width());
        self.right_multiply(&mut q);
        q
    }
}

/// In-place fast Walsh–Hadamard transform `v ← H·v` (unnormalised; `v.len()` a power of two).
fn walsh_hadamard(mut v: ArrayViewMut1<f64>) {
    let n = v.len();
    let mut half = 1;
    while half < n {
        for block in (0..n).step_by(2 * half) {
            for i in block..block + half {
                let (a, b) = (v[i], v[i + half]);
                v[i] = a + b;
                v[i + half] = a - b;
            }
        }
        half *= 2;
    }
}

/// How one MatMul's weight `W` changes.
#[derive(Debug, Default)]
struct Fold {
    /// It reads the output of a norm with this scale `w`: `W ← Qᵀ·diag(w)·W`.
    reads: Option<Vec<f64>>,
    /// Its output is added to the stream: `W ← W·Q`.
    writes: bool,
}

/// Where the stream begins.
#[derive(Debug)]
enum Start {
    /// An op that commutes with the rotation applied to a constant (the embedding lookup
    /// `Gather(E, ids)`): the constant is rotated along its last axis, `E ← E·Q`.
    Table { node: NodeIndex },
    /// Anything else (a graph input where the model was cut): `h ← h·Q` by a new MatMul.
    Value(ValueRef),
}

/// Everything the rotation changes, found without touching the graph.
#[derive(Debug)]
struct Plan {
    width: usize,
    rotation: Rotation,
    start: Start,
    /// The RMSNorms that read the stream, in graph order.
    norms: Vec<NodeIndex>,
    folds: BTreeMap<NodeIndex, Fold>,
    /// Nodes whose outputs become rotated without being rebuilt: residual Adds, and the casts,
    /// reshapes and slices on the stream or between a norm and its readers.
    rotated: Vec<NodeIndex>,
}

fn first_value(node: NodeIndex) -> ValueRef {
    ValueRef { node, output: 0 }
}

/// Operand `slot` of `node`, or an error naming the node (shape inference guarantees the arity
/// of a verified graph; an unverified one must not make the pass panic).
fn operand(graph: &Graph, node: NodeIndex, slot: usize) -> Result<ValueRef, CompileError> {
    graph
        .operands(node)
        .get(slot)
        .copied()
        .ok_or_else(|| CompileError::at(graph, first_value(node), format!("has no operand {slot}")))
}

/// The operand slots of `user` that read `value`.
fn slots(graph: &Graph, user: NodeIndex, value: ValueRef) -> Vec<usize> {
    graph
        .operands(user)
        .iter()
        .enumerate()
        .filter(|(_, v)| **v == value)
        .map(|(slot, _)| slot)
        .collect()
}

fn value_label(graph: &Graph, value: ValueRef) -> String {
    graph.value_name(value).unwrap_or("?").to_string()
}

fn shape(graph: &Graph, value: ValueRef) -> Vec<usize> {
    graph
        .value_type(value)
        .map(|t| t.shape.clone())
        .unwrap_or_default()
}

/// Refuses a value that is a graph output: it would be returned rotated.
fn not_an_output(graph: &Graph, value: ValueRef, what: &str) -> Result<(), CompileError> {
    if graph.outputs().iter().any(|o| o.value == value) {
        return Err(CompileError::at(
            graph,
            value,
            format!("{what} is a graph output: it would be returned rotated"),
        ));
    }
    Ok(())
}

/// The float matrix of a constant weight `[rows, cols]`, or an error naming `user`.
fn weight_matrix(
    graph: &Graph,
    user: NodeIndex,
    weight: ValueRef,
) -> Result<Array2<f64>, CompileError> {
    let refuse = |why: &str| {
        CompileError::at(
            graph,
            first_value(user),
            format!(
                "weight `{}` {why}: the rotation cannot be folded into it",
                value_label(graph, weight)
            ),
        )
    };
    let tensor = graph
        .constant(weight)
        .ok_or_else(|| refuse("is not a constant tensor"))?;
    if !matches!(tensor.dtype(), DType::F32 | DType::F64) {
        return Err(refuse("is not a float tensor"));
    }
    tensor
        .to_f64()
        .into_dimensionality::<Ix2>()
        .map_err(|_| refuse("is not a matrix"))
}

/// Finds the stream and everything the rotation (signs from `seed`) reaches, refusing what would
/// break invariance. `None` when the graph has no RMSNorm.
fn analyse(graph: &Graph, seed: u64) -> Result<Option<Plan>, CompileError> {
    let order = graph.topological_order();
    if let Some(&norm) = order
        .iter()
        .find(|n| matches!(graph.node(**n).op, Op::LayerNormalization { .. }))
    {
        return Err(CompileError::at(
            graph,
            first_value(norm),
            "LayerNorm is not invariant under a rotation of its input: its mean-centering must \
             first be folded into the weights that write the residual stream (SliceGPT), which \
             is not implemented; only RMSNorm models can be rotated",
        ));
    }
    let Some(&first_norm) = order
        .iter()
        .find(|n| matches!(graph.node(**n).op, Op::RmsNorm { .. }))
    else {
        return Ok(None);
    };
    let root = stream_root(graph, operand(graph, first_norm, 0)?);
    let width = shape(graph, root).last().copied().unwrap_or(0);
    let float = graph
        .value_type(root)
        .is_some_and(|t| matches!(t.dtype, DType::F32 | DType::F64));
    if !float || width == 0 {
        return Err(CompileError::at(
            graph,
            first_value(first_norm),
            "the residual stream must be a non-empty float tensor",
        ));
    }
    let rotation = Rotation::new(width, seed).ok_or_else(|| {
        CompileError::at(
            graph,
            first_value(first_norm),
            format!(
                "the residual width {width} is not a power of two: there is no Hadamard matrix \
                 of that order to rotate by"
            ),
        )
    })?;
    let mut plan = Plan {
        width,
        rotation,
        start: start_of(graph, root),
        norms: Vec::new(),
        folds: BTreeMap::new(),
        rotated: Vec::new(),
    };
    // Walk the stream from its root: a stream value may feed RMSNorms, residual Adds (whose
    // results are stream values) and ops that commute with the rotation (whose results are
    // too); anything else would see rotated values.
    let mut stack = vec![root];
    let mut seen = HashSet::new();
    while let Some(current) = stack.pop() {
        if !seen.insert(current) {
            continue;
        }
        not_an_output(graph, current, "a residual stream value")?;
        for user in graph.users(current.node) {
            let slots = slots(graph, user, current);
            if slots.is_empty() {
                continue;
            }
            match graph.node(user).op {
                Op::RmsNorm { .. } if slots == [0] => {
                    plan.norms.push(user);
                    add_readers(graph, user, &mut plan)?;
                }
                Op::Binary(BinaryOp::Add) if slots.len() == 1 => {
                    add_writer(graph, user, slots[0], &mut plan)?;
                    plan.rotated.push(user);
                    stack.push(first_value(user));
                }
                _ if slots == [0] && commutes_with_rotation(graph, user) => {
                    plan.rotated.push(user);
                    stack.push(first_value(user));
                }
                _ => {
                    return Err(CompileError::at(
                        graph,
                        first_value(user),
                        format!(
                            "reads the residual stream value `{}`, which only RMSNorms, \
                             residual Adds and ops that commute with the rotation may read",
                            value_label(graph, current)
                        ),
                    ));
                }
            }
        }
    }
    let position: HashMap<NodeIndex, usize> =
        order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    plan.norms.sort_by_key(|norm| position.get(norm).copied());
    Ok(Some(plan))
}

/// The first value of the stream: `value` (the first norm's input), or, back through the casts
/// and reshapes that alone read their input (HF Llama casts the embedding to f32), the value
/// they start from. It stops before a constant, which is rotated where it is read.
fn stream_root(graph: &Graph, value: ValueRef) -> ValueRef {
    let mut root = value;
    while value_of_one_output(graph, root)
        && commutes_with_rotation(graph, root.node)
        && let Some(&input) = graph.operands(root.node).first()
        && !graph.node(input.node).op.is_constant()
        && graph.use_count(input) == 1
    {
        root = input;
    }
    root
}

fn value_of_one_output(graph: &Graph, value: ValueRef) -> bool {
    value.output == 0 && graph.node(value.node).outputs.len() == 1
}

/// `Table` when `root` is computed from a constant float tensor by an op that commutes with the
/// rotation (row lookup in the embedding table), else `Value`.
fn start_of(graph: &Graph, root: ValueRef) -> Start {
    if value_of_one_output(graph, root)
        && commutes_with_rotation(graph, root.node)
        && let Some(&table) = graph.operands(root.node).first()
        && graph.constant(table).is_some_and(|t| t.dtype().is_float())
    {
        return Start::Table { node: root.node };
    }
    Start::Value(root)
}

/// Records the residual Add `add` (the stream at operand `slot`): the other operand must be a
/// MatMul by a constant `[k, d]` weight that nothing else reads.
fn add_writer(
    graph: &Graph,
    add: NodeIndex,
    slot: usize,
    plan: &mut Plan,
) -> Result<(), CompileError> {
    let (stream, written) = (operand(graph, add, slot)?, operand(graph, add, 1 - slot)?);
    let refuse = |why: String| CompileError::at(graph, first_value(add), why);
    if shape(graph, first_value(add)) != shape(graph, stream)
        || shape(graph, written) != shape(graph, stream)
    {
        return Err(refuse(
            "adds to the residual stream with broadcasting: not a residual connection".into(),
        ));
    }
    let writer = written.node;
    if !matches!(graph.node(writer).op, Op::MatMul) {
        return Err(refuse(format!(
            "adds `{}` to the residual stream, which is not a MatMul output: the rotation can \
             only be folded into a weight",
            value_label(graph, written)
        )));
    }
    if graph.use_count(written) != 1 {
        return Err(CompileError::at(
            graph,
            written,
            "writes the residual stream and is read elsewhere too: rotating it would change \
             that reader",
        ));
    }
    let weight = operand(graph, writer, 1)?;
    let columns = weight_matrix(graph, writer, weight)?.ncols();
    if columns != plan.width {
        return Err(CompileError::at(
            graph,
            written,
            format!("weight has {columns} columns, the stream {}", plan.width),
        ));
    }
    plan.folds.entry(writer).or_default().writes = true;
    Ok(())
}

/// Records the MatMuls that read the output of `norm` (directly or through ops that move whole
/// rows, which commute with `·Q`), with the norm's scale to fold into them.
fn add_readers(graph: &Graph, norm: NodeIndex, plan: &mut Plan) -> Result<(), CompileError> {
    let scale_value = operand(graph, norm, 1)?;
    let scale = graph
        .constant(scale_value)
        .filter(|t| t.shape() == [plan.width] && t.dtype().is_float())
        .ok_or_else(|| {
            CompileError::at(
                graph,
                first_value(norm),
                format!(
                    "scale `{}` is not a constant float vector of length {}: it cannot be \
                     folded into the weights",
                    value_label(graph, scale_value),
                    plan.width
                ),
            )
        })?
        .to_f64()
        .iter()
        .copied()
        .collect::<Vec<f64>>();
    let mut stack = vec![first_value(norm)];
    while let Some(value) = stack.pop() {
        not_an_output(graph, value, "a rotated norm output")?;
        for user in graph.users(value.node) {
            let slots = slots(graph, user, value);
            if slots.is_empty() {
                continue;
            }
            let refuse = || {
                CompileError::at(
                    graph,
                    first_value(user),
                    format!(
                        "reads `{}`, the rotated output of an RMSNorm: only MatMuls by a \
                         constant weight (through reshapes and slices that keep the last axis) \
                         may",
                        value_label(graph, value)
                    ),
                )
            };
            if slots != [0] {
                return Err(refuse());
            }
            if matches!(graph.node(user).op, Op::MatMul) {
                let weight = operand(graph, user, 1)?;
                weight_matrix(graph, user, weight)?;
                let fold = plan.folds.entry(user).or_default();
                if fold.reads.is_some() {
                    return Err(refuse());
                }
                fold.reads = Some(scale.clone());
            } else if commutes_with_rotation(graph, user) {
                plan.rotated.push(user);
                stack.push(first_value(user));
            } else {
                return Err(refuse());
            }
        }
    }
    Ok(())
}

/// Whether `node` (one output, operand 0 a rotated value) commutes with multiplying the rows of
/// its last axis by `Q`: a float-to-float cast, or an op that only selects, repeats or regroups
/// whole rows.
fn commutes_with_rotation(graph: &Graph, node: NodeIndex) -> bool {
    let n = graph.node(node);
    let Some(operand) = graph.operands(node).first().copied() else {
        return false;
    };
    let input = shape(graph, operand);
    let output = shape(graph, first_value(node));
    let rank = input.len();
    let last_kept = !input.is_empty() && input.last() == output.last();
    let not_last = |axis: i64| normalize_axis(axis, rank).is_ok_and(|a| a + 1 != rank);
    n.outputs.len() == 1
        && last_kept
        && match &n.op {
            Op::Cast { to } => to.is_float(),
            // Row-major order: a reshape that keeps the last dimension keeps every row whole.
            Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Flatten { .. }
            | Op::Expand { .. } => true,
            Op::Transpose { perm } => perm.last() == Some(&(rank - 1)),
            Op::Slice { axes, .. } => axes.iter().all(|a| not_last(*a)),
            Op::Gather { axis } => not_last(*axis),
            _ => false,
        }
}

/// Rewrites `graph` by `plan`; returns the new RMSNorm nodes in the order of `plan.norms`.
fn apply(graph: &mut Graph, plan: &Plan) -> Result<Vec<NodeIndex>, CompileError> {
    let rotation = &plan.rotation;
    // Every replaced operand, per node, so that each node is rebuilt once.
    let mut overrides: BTreeMap<NodeIndex, Vec<(usize, ValueRef)>> = BTreeMap::new();
    // Nodes whose values become rotated: ranges measured or asserted on them no longer hold.
    let mut rotated: HashSet<NodeIndex> = plan.rotated.iter().copied().collect();

    for (&matmul, fold) in &plan.folds {
        let weight = operand(graph, matmul, 1)?;
        let mut w = weight_matrix(graph, matmul, weight)?;
        if let Some(scale) = &fold.reads {
            for (mut row, s) in w.rows_mut().into_iter().zip(scale) {
                row *= *s;
            }
            rotation.left_multiply_transposed(&mut w);
        }
        if fold.writes {
            rotation.right_multiply(&mut w);
            rotated.insert(matmul);
        }
        let folded = new_constant(graph, weight, w.into_dyn(), "rotated");
        overrides.entry(matmul).or_default().push((1, folded));
    }

    match plan.start {
        Start::Table { node } => {
            let table = operand(graph, node, 0)?;
            let values = graph.constant(table).map(Tensor::to_f64).ok_or_else(|| {
                CompileError::at(graph, first_value(node), "the table is not a constant")
            })?;
            let shape = values.shape().to_vec();
            // Rows of the last axis, in C order: `[…, d]` → `[n, d]` and back.
            let mut rows = values
                .into_shape_with_order((shape.iter().product::<usize>() / plan.width, plan.width))
                .map_err(|e| CompileError::at(graph, first_value(node), e.to_string()))?;
            rotation.right_multiply(&mut rows);
            let rows = rows
                .into_shape_with_order(IxDyn(&shape))
                .map_err(|e| CompileError::at(graph, first_value(node), e.to_string()))?;
            let folded = new_constant(graph, table, rows, "rotated");
            overrides.entry(node).or_default().push((0, folded));
            rotated.insert(node);
        }
        Start::Value(value) => {
            // The stream's first value stays; its readers (all checked by `analyse`) read
            // `value·Q` instead.
            let readers: Vec<(NodeIndex, usize)> = graph
                .users(value.node)
                .into_iter()
                .flat_map(|user| {
                    slots(graph, user, value)
                        .into_iter()
                        .map(move |s| (user, s))
                })
                .collect();
            let dtype = graph.value_type(value).map_or(DType::F64, |t| t.dtype);
            let q = typed(rotation.matrix().into_dyn(), dtype);
            let source = SourceLocation::Synthetic(format!("{PASS}: Hadamard rotation"));
            let q = graph.add_constant("residual_rotation", q, source);
            let name = format!("{}.rotated", value_label(graph, value));
            let node_source = graph.node(value.node).source.clone();
            let turned = emit(graph, PASS, Op::MatMul, &[value, q], name, &node_source)?;
            rotated.insert(turned.node);
            for (node, slot) in readers {
                overrides.entry(node).or_default().push((slot, turned));
            }
        }
    }

    for &norm in &plan.norms {
        let scale = operand(graph, norm, 1)?;
        let ones = ArrayD::ones(shape(graph, scale));
        let ones = new_constant(graph, scale, ones, "folded");
        overrides.entry(norm).or_default().push((1, ones));
        rotated.insert(norm);
    }

    let mut rebuilt = HashMap::new();
    for (node, replaced) in overrides {
        let keeps_values = !rotated.contains(&node);
        rebuilt.insert(node, rebuild(graph, node, &replaced, keeps_values)?);
    }
    // The nodes not rebuilt (residual Adds, reshapes) keep their index and now hold rotated
    // values.
    for node in rotated.into_iter().filter(|n| !rebuilt.contains_key(n)) {
        let n = graph.node_mut(node);
        n.hints.range = None;
        n.calibrated_ranges.clear();
    }
    Ok(plan
        .norms
        .iter()
        .map(|norm| rebuilt.get(norm).copied().unwrap_or(*norm))
        .collect())
}

/// A float tensor of the given element type.
fn typed(values: ArrayD<f64>, dtype: DType) -> Tensor {
    match dtype {
        DType::F32 => Tensor::F32(values.mapv(|v| v as f32)),
        _ => Tensor::F64(values),
    }
}

/// A constant replacing `old` (same element type, name with `suffix`, same source).
fn new_constant(graph: &mut Graph, old: ValueRef, values: ArrayD<f64>, suffix: &str) -> ValueRef {
    let dtype = graph.value_type(old).map_or(DType::F64, |t| t.dtype);
    let name = format!("{}.{suffix}", value_label(graph, old));
    let source = graph.node(old.node).source.clone();
    graph.add_constant(name, typed(values, dtype), source)
}

/// Replaces `node` by a copy whose operands at the given slots are replaced, with the same
/// names, source and secrecy; hints and calibrated ranges are kept only if `keeps_values`.
fn rebuild(
    graph: &mut Graph,
    node: NodeIndex,
    replaced: &[(usize, ValueRef)],
    keeps_values: bool,
) -> Result<NodeIndex, CompileError> {
    let mut operands = graph.operands(node);
    for &(slot, value) in replaced {
        let operand = operands.get_mut(slot).ok_or_else(|| {
            CompileError::at(graph, first_value(node), format!("no operand {slot}"))
        })?;
        *operand = value;
    }
    let old = graph.node(node).clone();
    let ir = |source: IrError| CompileError::Ir { pass: PASS, source };
    let new = graph
        .add_node(
            old.op.clone(),
            &operands,
            old.output_names.clone(),
            old.source.clone(),
        )
        .map_err(ir)?
        .first()
        .map(|v| v.node)
        .ok_or_else(|| CompileError::at(graph, first_value(node), "no output"))?;
    let n = graph.node_mut(new);
    // The client may encrypt a value computed from public operands (`--encrypt-from`): keep it.
    for (ty, old_ty) in n.outputs.iter_mut().zip(&old.outputs) {
        ty.secrecy = ty.secrecy.max(old_ty.secrecy);
    }
    if keeps_values {
        n.hints = old.hints.clone();
        n.calibrated_ranges = old.calibrated_ranges.clone();
    }
    for output in 0..old.outputs.len() {
        graph
            .replace_uses(ValueRef { node, output }, ValueRef { node: new, output })
            .map_err(ir)?;
    }
    Ok(new)
}

/// `max |x|` of each norm's input over the samples (empty without samples).
fn norm_input_maxima(
    graph: &Graph,
    norms: &[NodeIndex],
    samples: &[HashMap<String, Tensor>],
) -> Result<Vec<f64>, CompileError> {
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    let observed: Vec<ValueRef> = norms
        .iter()
        .filter_map(|n| graph.operands(*n).first().copied())
        .collect();
    let wanted: HashSet<&str> = graph.inputs().iter().map(|i| graph.input_name(i)).collect();
    let interpreter = Interpreter::new(graph, Precision::F64);
    let mut maxima = vec![0.0_f64; observed.len()];
    for sample in samples {
        let inputs: HashMap<String, Tensor> = sample
            .iter()
            .filter(|(name, _)| wanted.contains(name.as_str()))
            .map(|(name, t)| (name.clone(), t.clone()))
            .collect();
        let values = interpreter
            .run_values(&inputs, &observed)
            .map_err(|source| CompileError::Ir { pass: PASS, source })?;
        for (max, value) in maxima.iter_mut().zip(&observed) {
            if let Some(Value::Float(a)) = values.get(value) {
                *max = a.iter().fold(*max, |m, x| m.max(x.abs()));
            }
        }
    }
    Ok(maxima)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ir::{InputRole, OutputRole, Secrecy, TensorType};
    use ndarray::array;

    const VOCAB: usize = 6;
    const TOKENS: usize = 3;
    /// Height of the outlier channel of the embedding.
    const OUTLIER: f64 = 20.0;

    /// Deterministic values uniform in `[low, high)`.
    fn random(shape: &[usize], seed: u64, low: f64, high: f64) -> ArrayD<f64> {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ArrayD::from_shape_simple_fn(IxDyn(shape), || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            low + (high - low) * ((state >> 11) as f64 / (1u64 << 53) as f64)
        })
    }

    fn source(name: &str) -> SourceLocation {
        SourceLocation::Synthetic(name.into())
    }

    fn constant(graph: &mut Graph, name: &str, values: ArrayD<f64>) -> ValueRef {
        graph.add_constant(name, Tensor::F64(values), source(name))
    }

    fn matrix(graph: &mut Graph, name: &str, rows: usize, cols: usize, seed: u64) -> ValueRef {
        let bound = 1.0 / (rows as f64).sqrt();
        constant(graph, name, random(&[rows, cols], seed, -bound, bound))
    }

    fn node(graph: &mut Graph, op: Op, operands: &[ValueRef], name: &str) -> ValueRef {
        graph
            .add_node(op, operands, vec![name.into()], source(name))
            .unwrap()[0]
    }

    fn rms_norm(graph: &mut Graph, x: ValueRef, width: usize, name: &str, seed: u64) -> ValueRef {
        let scale = constant(
            graph,
            &format!("{name}.scale"),
            random(&[width], seed, 0.5, 1.5),
        );
        node(graph, Op::RmsNorm { epsilon: 1e-5 }, &[x, scale], name)
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Variant {
        Plain,
        /// The stream starts at a graph input (the model was cut after its embedding).
        FromInput,
        /// The first block's down projection reads its weight from a graph input.
        WeightInput,
    }

    /// Two residual blocks and a head on a `[1, 3, width]` stream (f64 throughout):
    /// `h0 = Cast(E[ids])` (E with an outlier channel 3), or the input `x`;
    /// `h1 = h0 + silu(rms(h0)·A)·B`; `h2 = (rms(h1)·C ⊙ rms(h1)·G)·O + h1`;
    /// `logits = Reshape(rms(h2))·L`. Returns the graph and `h1`.
    fn model(width: usize, variant: Variant) -> (Graph, ValueRef) {
        let mut g = Graph::new("two_blocks");
        let h0 = if variant == Variant::FromInput {
            let ty = TensorType::new(DType::F64, vec![1, TOKENS, width], Secrecy::Encrypted);
            g.add_input("x", ty, InputRole::Input, source("x"))
        } else {
            let ty = TensorType::new(DType::I64, vec![1, TOKENS], Secrecy::Public);
            let ids = g.add_input("ids", ty, InputRole::Input, source("ids"));
            let mut table = random(&[VOCAB, width], 1, -1.0, 1.0);
            table.index_axis_mut(ndarray::Axis(1), 3).fill(OUTLIER);
            let table = constant(&mut g, "embedding", table);
            let rows = node(&mut g, Op::Gather { axis: 0 }, &[table, ids], "gather");
            node(&mut g, Op::Cast { to: DType::F64 }, &[rows], "cast")
        };
        let n0 = rms_norm(&mut g, h0, width, "norm0", 2);
        let a = matrix(&mut g, "A", width, 16, 3);
        let up = node(&mut g, Op::MatMul, &[n0, a], "up");
        let act = node(&mut g, Op::Silu, &[up], "silu");
        let b = if variant == Variant::WeightInput {
            let ty = TensorType::new(DType::F64, vec![16, width], Secrecy::Public);
            g.add_input("B", ty, InputRole::Input, source("B"))
        } else {
            matrix(&mut g, "B", 16, width, 4)
        };
        let down = node(&mut g, Op::MatMul, &[act, b], "down");
        let h1 = node(&mut g, Op::Binary(BinaryOp::Add), &[h0, down], "h1");
        let n1 = rms_norm(&mut g, h1, width, "norm1", 5);
        let c = matrix(&mut g, "C", width, width, 6);
        let gate = matrix(&mut g, "G", width, width, 7);
        let left = node(&mut g, Op::MatMul, &[n1, c], "left");
        let right = node(&mut g, Op::MatMul, &[n1, gate], "right");
        let product = node(&mut g, Op::Binary(BinaryOp::Mul), &[left, right], "product");
        let o = matrix(&mut g, "O", width, width, 8);
        let out = node(&mut g, Op::MatMul, &[product, o], "out");
        let h2 = node(&mut g, Op::Binary(BinaryOp::Add), &[out, h1], "h2");
        let n2 = rms_norm(&mut g, h2, width, "norm2", 9);
        let rows = node(
            &mut g,
            Op::Reshape {
                shape: vec![TOKENS, width],
            },
            &[n2],
            "rows",
        );
        let head = matrix(&mut g, "L", width, VOCAB, 10);
        let logits = node(&mut g, Op::MatMul, &[rows, head], "logits");
        g.add_output("logits", logits, OutputRole::Output);
        g.verify().unwrap();
        (g, h1)
    }

    fn inputs(graph: &Graph, seed: u64) -> HashMap<String, Tensor> {
        let mut inputs = HashMap::new();
        for input in graph.inputs() {
            let ty = graph.input_type(input);
            let name = graph.input_name(input).to_string();
            let tensor = match ty.dtype {
                DType::I64 => Tensor::I64(ArrayD::from_shape_fn(IxDyn(&ty.shape), |i| {
                    ((i[1] as u64 * 7 + seed) % VOCAB as u64) as i64
                })),
                _ => {
                    let mut x = random(&ty.shape, seed + 100, -1.0, 1.0);
                    if name == "x" {
                        x.index_axis_mut(ndarray::Axis(2), 3).fill(OUTLIER);
                    }
                    Tensor::F64(x)
                }
            };
            inputs.insert(name, tensor);
        }
        inputs
    }

    fn logits(graph: &Graph, inputs: &HashMap<String, Tensor>) -> ArrayD<f64> {
        Interpreter::new(graph, Precision::F64)
            .run(inputs)
            .unwrap()
            .remove("logits")
            .unwrap()
            .to_f64()
    }

    /// The graph with its weights, as text: equal texts mean an untouched graph.
    fn snapshot(graph: &Graph) -> String {
        serde_json::to_string(graph).unwrap()
    }

    #[test]
    fn rotation_is_orthogonal_seeded_and_fast_products_agree() {
        let d = 16;
        let q = Rotation::new(d, 7).unwrap().matrix();
        let identity = q.dot(&q.t());
        assert!(
            (identity - Array2::<f64>::eye(d))
                .iter()
                .all(|e| e.abs() < 1e-12)
        );
        let entry = 1.0 / (d as f64).sqrt();
        assert!(q.iter().all(|e| (e.abs() - entry).abs() < 1e-15));
        assert_eq!(q, Rotation::new(d, 7).unwrap().matrix());
        assert_ne!(q, Rotation::new(d, 8).unwrap().matrix());
        // The signs act before the mixing, so the seed changes magnitudes, not only signs.
        let x = random(&[1, d], 5, -1.0, 1.0)
            .into_dimensionality::<Ix2>()
            .unwrap();
        let magnitudes = |seed| {
            x.dot(&Rotation::new(d, seed).unwrap().matrix())
                .mapv(f64::abs)
        };
        assert_ne!(magnitudes(7), magnitudes(8));

        let rotation = Rotation::new(d, 7).unwrap();
        let m = random(&[5, d], 3, -1.0, 1.0)
            .into_dimensionality::<Ix2>()
            .unwrap();
        let mut right = m.clone();
        rotation.right_multiply(&mut right);
        assert!((right - m.dot(&q)).iter().all(|e| e.abs() < 1e-12));
        let m = m.t().to_owned();
        let mut left = m.clone();
        rotation.left_multiply_transposed(&mut left);
        assert!((left - q.t().dot(&m)).iter().all(|e| e.abs() < 1e-12));

        assert!(Rotation::new(12, 0).is_none());
    }

    #[test]
    fn rotated_graph_computes_the_same_and_spreads_the_outlier() {
        for variant in [Variant::Plain, Variant::FromInput] {
            let (mut graph, _) = model(8, variant);
            let original = graph.clone();
            let samples: Vec<_> = (0..3).map(|s| inputs(&graph, s)).collect();
            let mut pass = RotateResidual::new(42).with_samples(samples.clone());
            let summary = pass.run(&mut graph).unwrap();
            graph.verify().unwrap();
            for sample in &samples {
                let difference = logits(&graph, sample) - logits(&original, sample);
                let worst = difference.iter().fold(0.0_f64, |m, d| m.max(d.abs()));
                assert!(worst <= 1e-9, "{summary}: max abs difference {worst:e}");
            }
            // Every norm scale is folded away.
            for node in graph.node_indices() {
                if matches!(graph.node(node).op, Op::RmsNorm { .. }) {
                    let scale = graph.constant(graph.operands(node)[1]).unwrap();
                    assert!(scale.to_f64().iter().all(|&s| s == 1.0));
                }
            }
            let norms: Vec<&str> = pass.shrink.iter().map(|r| r.norm.as_str()).collect();
            assert_eq!(norms, ["<norm0>", "<norm1>", "<norm2>"], "{summary}");
            // A spike of 20 in one of 8 channels is spread to about 20/√8 ≈ 7 (plus the rest).
            let first = &pass.shrink[0];
            assert!(
                first.before >= OUTLIER && first.after < 0.6 * first.before,
                "{first:?}"
            );
            assert!(summary.contains("<norm0> 20."), "{summary}");
        }
    }

    #[test]
    fn the_embedding_table_is_rotated_and_no_matmul_inserted() {
        let (mut graph, _) = model(8, Variant::Plain);
        let matmuls = |g: &Graph| g.op_histogram().get("MatMul").copied();
        let before = matmuls(&graph);
        let summary = RotateResidual::new(1).run(&mut graph).unwrap();
        assert_eq!(matmuls(&graph), before);
        assert!(summary.contains("embedding table rotated"), "{summary}");
        assert!(summary.contains("no samples"), "{summary}");
        let names: HashSet<&str> = graph
            .node_indices()
            .into_iter()
            .filter_map(|n| graph.value_name(first_value(n)))
            .collect();
        for weight in ["embedding", "A", "B", "C", "G", "O", "L"] {
            assert!(!names.contains(weight), "{weight} still there");
            assert!(names.contains(format!("{weight}.rotated").as_str()));
        }
    }

    /// Runs the pass expecting a refusal at `node`; the graph must be left exactly as it was.
    fn refused(mut graph: Graph, node: &str, why: &str) {
        let before = snapshot(&graph);
        let error = RotateResidual::new(0).run(&mut graph).unwrap_err();
        assert_eq!(snapshot(&graph), before, "{error}");
        match &error {
            CompileError::Node {
                node: at, message, ..
            } => {
                assert_eq!(at, node, "{error}");
                assert!(message.contains(why), "{error}");
            }
            other => panic!("not a node error: {other}"),
        }
    }

    #[test]
    fn what_breaks_invariance_is_refused_and_the_graph_left_untouched() {
        refused(model(6, Variant::Plain).0, "<norm0>", "not a power of two");
        refused(
            model(8, Variant::WeightInput).0,
            "<down>",
            "is not a constant",
        );

        let (mut graph, h1) = model(8, Variant::Plain);
        let side = node(
            &mut graph,
            Op::Unary(cachemir_ir::UnaryOp::Exp),
            &[h1],
            "side",
        );
        graph.add_output("side", side, OutputRole::Output);
        refused(graph, "<side>", "reads the residual stream value `h1`");

        let (mut graph, h1) = model(8, Variant::Plain);
        graph.add_output("hidden", h1, OutputRole::Output);
        refused(graph, "<h1>", "graph output");

        let mut graph = Graph::new("layer_norm");
        let ty = TensorType::new(DType::F64, vec![1, 8], Secrecy::Encrypted);
        let x = graph.add_input("x", ty, InputRole::Input, source("x"));
        let scale = constant(&mut graph, "scale", ArrayD::ones(IxDyn(&[8])));
        let op = Op::LayerNormalization {
            axis: -1,
            epsilon: 1e-5,
        };
        let y = node(&mut graph, op, &[x, scale], "ln");
        graph.add_output("y", y, OutputRole::Output);
        refused(graph, "<ln>", "mean-centering");
    }

    #[test]
    fn a_graph_without_rms_norm_is_left_alone() {
        let mut graph = Graph::new("linear");
        let ty = TensorType::new(DType::F64, vec![1, 2], Secrecy::Encrypted);
        let x = graph.add_input("x", ty, InputRole::Input, source("x"));
        let w = constant(&mut graph, "w", array![[1.0, 2.0], [3.0, 4.0]].into_dyn());
        let y = node(&mut graph, Op::MatMul, &[x, w], "y");
        graph.add_output("y", y, OutputRole::Output);
        let before = snapshot(&graph);
        let summary = RotateResidual::new(0).run(&mut graph).unwrap();
        assert!(summary.contains("no RMSNorm"), "{summary}");
        assert_eq!(snapshot(&graph), before);
    }
}
