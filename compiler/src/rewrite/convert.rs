//! IR graph ⇄ e-graph.
//!
//! [`encode`] adds one e-node per IR node (inputs and weights become [`Kind::Leaf`]s that refer
//! back to their node: weight data never enters the e-graph; a multi-output op gets one
//! [`Kind::Output`] projection per output) and writes single-axis `Softmax` and `Reduce` axes
//! in their negative form, the canonical spelling patterns name.
//!
//! [`decode`] extracts the cheapest e-node of every needed e-class ([`FheCostFunction`]) and
//! rebuilds an IR graph: inputs in their original order with their names, types and roles;
//! outputs in order with their names and roles; a value that existed before keeps its name,
//! source location and hints. An op whose operands are all (materialised) `Constant`s is
//! evaluated here and becomes a new `Constant` — this is where a scale, transpose or product
//! folded into a weight by a rule is materialised — unless the result would be much larger
//! than its operands. Ops on `SyntheticWeight`s stay ops (public, so free): their data is never
//! generated.

use super::RewriteError;
use super::analysis::{LeafFacts, TensorAnalysis, TensorGraph};
use super::cost::{FheCost, FheCostFunction};
use super::language::{Kind, TensorNode};
use cachemir_ir::interp::{Value, eval_op};
use cachemir_ir::{Graph, Op, SourceLocation, Tensor, ValueRef};
use egg::{Extractor, Id};
use std::collections::{HashMap, HashSet};

/// A folded constant may be this many elements even when its operands are smaller.
const FOLD_LIMIT: usize = 1 << 16;

/// A graph in e-graph form.
#[derive(Debug)]
pub struct Encoded {
    pub egraph: TensorGraph,
    /// The e-class of each graph output, in order.
    pub roots: Vec<Id>,
    /// The source node of each leaf.
    pub leaves: Vec<ValueRef>,
    /// E-classes that hold a value of the source graph, with that value (the first one, when
    /// several values are equal).
    pub originals: Vec<(Id, ValueRef)>,
}

/// Builds the e-graph of `graph` (which must verify).
///
/// # Errors
/// [`RewriteError::Unsupported`] for a node whose output types differ from what shape inference
/// gives for its canonical form (never for a graph that verifies).
pub fn encode(graph: &Graph) -> Result<Encoded, RewriteError> {
    let mut egraph = TensorGraph::new(TensorAnalysis::default());
    let mut ids: HashMap<ValueRef, Id> = HashMap::new();
    let mut leaves = Vec::new();
    let mut originals = Vec::new();
    for node in graph.topological_order() {
        let n = graph.node(node);
        let value = ValueRef { node, output: 0 };
        if matches!(n.op, Op::Input) || n.op.is_constant() {
            let index = u32::try_from(leaves.len())
                .map_err(|_| RewriteError::Unsupported("more than 2^32 leaves".into()))?;
            let facts = leaf_facts(graph, value).ok_or_else(|| {
                RewriteError::Unsupported(format!("{}: a leaf without an output", n.source))
            })?;
            egraph.analysis.leaves.push(facts);
            leaves.push(value);
            let id = egraph.add(TensorNode::leaf(index));
            ids.insert(value, id);
            originals.push((id, value));
            continue;
        }
        let operands: Vec<Id> = graph
            .operands(node)
            .iter()
            .map(|v| ids.get(v).copied())
            .collect::<Option<_>>()
            .ok_or_else(|| RewriteError::Unsupported(format!("{}: dangling operand", n.source)))?;
        let rank = graph
            .operands(node)
            .first()
            .and_then(|v| graph.value_type(*v))
            .map_or(0, |t| t.rank());
        let mut id = egraph.add(TensorNode::op(canonical_op(&n.op, rank), operands));
        if is_encryption_point(&egraph[id].data.types, &n.outputs) {
            id = egraph.add(TensorNode::encrypt(id));
        }
        if egraph[id].data.types != n.outputs {
            return Err(RewriteError::Unsupported(format!(
                "{}: {} has types {:?} where inference gives {:?}",
                n.source,
                n.op.name(),
                n.outputs,
                egraph[id].data.types
            )));
        }
        if n.outputs.len() == 1 {
            ids.insert(value, id);
            originals.push((id, value));
        } else {
            // The op's class names its outputs after the source node's.
            originals.push((id, value));
            for output in 0..n.outputs.len() {
                let projection = egraph.add(TensorNode::output(output as u32, id));
                let value = ValueRef { node, output };
                ids.insert(value, projection);
                originals.push((projection, value));
            }
        }
    }
    let roots = graph
        .outputs()
        .iter()
        .map(|o| ids.get(&o.value).copied())
        .collect::<Option<_>>()
        .ok_or_else(|| RewriteError::Unsupported("an output refers to a removed value".into()))?;
    egraph.rebuild();
    Ok(Encoded {
        egraph,
        roots,
        leaves,
        originals,
    })
}

/// Whether a node's recorded types are the inferred ones but encrypted where inference says
/// public: the client encrypts this value (`Graph::encrypt_from`).
fn is_encryption_point(
    inferred: &[cachemir_ir::TensorType],
    recorded: &[cachemir_ir::TensorType],
) -> bool {
    inferred.len() == recorded.len()
        && inferred
            .iter()
            .zip(recorded)
            .all(|(i, r)| i.dtype == r.dtype && i.shape == r.shape && i.secrecy <= r.secrecy)
        && inferred != recorded
}

/// What the analysis knows about a leaf, read from its node (`None` for a node with no output).
fn leaf_facts(graph: &Graph, value: ValueRef) -> Option<LeafFacts> {
    let node = graph.node(value.node);
    let ty = node.outputs.first()?.clone();
    let (scalar, range) = match &node.op {
        // Only small constants are scanned (no rule reads a large weight's range).
        Op::Constant(t) if t.dtype().is_float() && !t.is_empty() && t.len() <= FOLD_LIMIT => {
            let data = t.to_f64();
            let lo = data.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = data.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let scalar = (t.len() == 1).then_some(lo);
            (
                scalar,
                (lo.is_finite() && hi.is_finite()).then_some((lo, hi)),
            )
        }
        _ => (None, None),
    };
    Some(LeafFacts {
        ty,
        constant: node.op.is_constant(),
        scalar,
        range,
    })
}

/// The op with a single `Softmax` / `Reduce` axis written from the end (`-1` for the last).
fn canonical_op(op: &Op, rank: usize) -> Op {
    let from_end = |axis: i64| if axis >= 0 { axis - rank as i64 } else { axis };
    match op {
        Op::Softmax { axis } => Op::Softmax {
            axis: from_end(*axis),
        },
        Op::Reduce {
            op,
            axes,
            keep_dims,
        } if axes.len() == 1 => Op::Reduce {
            op: *op,
            axes: vec![from_end(axes[0])],
            keep_dims: *keep_dims,
        },
        other => other.clone(),
    }
}

/// Rebuilds an IR graph from the cheapest form of every output of `encoded` in `egraph` (the
/// e-graph after saturation; the ids in `encoded` are canonicalised through it).
///
/// # Errors
/// [`RewriteError::Extraction`] when no well-typed form exists for a needed e-class, the
/// extracted form is cyclic, constant folding fails, or the result does not verify.
pub fn decode(
    source: &Graph,
    encoded: &Encoded,
    egraph: &TensorGraph,
) -> Result<Decoded, RewriteError> {
    let extractor = Extractor::new(egraph, FheCostFunction { egraph });
    let mut originals: HashMap<Id, ValueRef> = HashMap::new();
    for (id, value) in &encoded.originals {
        originals.entry(egraph.find(*id)).or_insert(*value);
    }
    let mut builder = Builder {
        source,
        encoded,
        egraph,
        extractor,
        originals,
        graph: Graph::new(source.name.clone()),
        built: HashMap::new(),
        in_progress: HashSet::new(),
        names: HashSet::new(),
        leaf_values: HashMap::new(),
        roots: HashMap::new(),
        folded: 0,
    };
    // Every input, used or not, in its original order.
    for input in source.inputs() {
        let n = source.node(input.node);
        let value = builder.graph.add_input(
            n.output_names[0].clone(),
            n.outputs[0].clone(),
            input.role.clone(),
            n.source.clone(),
        );
        builder.copy_annotations(
            ValueRef {
                node: input.node,
                output: 0,
            },
            value,
        );
        builder.names.insert(n.output_names[0].clone());
        builder.roots.insert(value, n.output_names[0].clone());
        builder.leaf_values.insert(
            ValueRef {
                node: input.node,
                output: 0,
            },
            value,
        );
    }
    for (output, root) in source.outputs().iter().zip(&encoded.roots) {
        let value = builder.build_value(egraph.find(*root))?;
        let expected = source.value_type(output.value);
        if builder.graph.value_type(value) != expected {
            return Err(RewriteError::Extraction(format!(
                "output `{}` changed type to {:?}",
                output.name,
                builder.graph.value_type(value)
            )));
        }
        builder
            .graph
            .add_output(output.name.clone(), value, output.role.clone());
    }
    let folded = builder.folded;
    let mut graph = builder.graph;
    // Folding leaves the folded operands behind.
    graph.prune(false);
    graph.verify().map_err(|e| {
        RewriteError::Extraction(format!("the rewritten graph does not verify: {e}"))
    })?;
    Ok(Decoded { graph, folded })
}

/// The rebuilt graph and how many ops were evaluated into constants on the way.
#[derive(Debug)]
pub struct Decoded {
    pub graph: Graph,
    pub folded: usize,
}

/// The state of [`decode`].
struct Builder<'a> {
    source: &'a Graph,
    encoded: &'a Encoded,
    egraph: &'a TensorGraph,
    extractor: Extractor<'a, FheCostFunction<'a>, TensorNode, TensorAnalysis>,
    originals: HashMap<Id, ValueRef>,
    graph: Graph,
    /// The values built for each e-class (several for a multi-output op's class).
    built: HashMap<Id, Vec<ValueRef>>,
    in_progress: HashSet<Id>,
    names: HashSet<String>,
    /// Source leaf node → its copy.
    leaf_values: HashMap<ValueRef, ValueRef>,
    /// Built value → the name of the source value it derives from (for naming new values).
    roots: HashMap<ValueRef, String>,
    /// Ops evaluated into constants.
    folded: usize,
}

impl Builder<'_> {
    /// Builds the (single) value of an e-class.
    fn build_value(&mut self, class: Id) -> Result<ValueRef, RewriteError> {
        let values = self.build(class)?;
        values
            .first()
            .copied()
            .ok_or_else(|| RewriteError::Extraction(format!("e-class {class} has no value")))
    }

    /// Builds e-class `root` and everything its cheapest form needs, operands first. The walk
    /// keeps its own stack: deep graphs (many layers) must not overflow the call stack.
    fn build(&mut self, root: Id) -> Result<Vec<ValueRef>, RewriteError> {
        let root = self.egraph.find(root);
        let mut stack = vec![(root, false)];
        while let Some((class, expanded)) = stack.pop() {
            if self.built.contains_key(&class) {
                continue;
            }
            if expanded {
                self.in_progress.remove(&class);
                let values = self.build_one(class)?;
                self.built.insert(class, values);
                continue;
            }
            self.in_progress.insert(class);
            stack.push((class, true));
            // Reversed, so that operands are built (and numbered) in operand order.
            for dependency in self.dependencies(class)?.into_iter().rev() {
                let dependency = self.egraph.find(dependency);
                if self.in_progress.contains(&dependency) {
                    return Err(RewriteError::Extraction(format!(
                        "the cheapest form of e-class {dependency} is cyclic"
                    )));
                }
                if !self.built.contains_key(&dependency) {
                    stack.push((dependency, false));
                }
            }
        }
        self.values(root)
    }

    /// The cheapest e-node of a class, refusing classes with no well-typed form.
    fn best(&self, class: Id) -> Result<TensorNode, RewriteError> {
        if self.extractor.find_best_cost(class) == FheCost::INFINITE {
            return Err(RewriteError::Extraction(format!(
                "e-class {class} has no well-typed form"
            )));
        }
        Ok(self.extractor.find_best_node(class).clone())
    }

    /// The e-classes whose values building `class` reads.
    fn dependencies(&self, class: Id) -> Result<Vec<Id>, RewriteError> {
        let node = self.best(class)?;
        Ok(match node.kind {
            // Built afresh from the public form's operands (see `build_encrypted`).
            Kind::Encrypt => self.best(self.egraph.find(node.children[0]))?.children,
            _ => node.children,
        })
    }

    /// The values already built for a class.
    fn values(&self, class: Id) -> Result<Vec<ValueRef>, RewriteError> {
        self.built
            .get(&self.egraph.find(class))
            .cloned()
            .ok_or_else(|| RewriteError::Extraction(format!("e-class {class} was not built")))
    }

    /// Builds one class whose dependencies are built.
    fn build_one(&mut self, class: Id) -> Result<Vec<ValueRef>, RewriteError> {
        let node = self.best(class)?;
        match &node.kind {
            Kind::Leaf(i) => Ok(vec![self.build_leaf(*i as usize)?]),
            Kind::Output(i) => {
                let of = self.values(node.children[0])?;
                let value = of.get(*i as usize).copied().ok_or_else(|| {
                    RewriteError::Extraction(format!("output {i} of a {}-output op", of.len()))
                })?;
                Ok(vec![value])
            }
            Kind::Op(op) => {
                let operands = self.operand_values(&node.children)?;
                self.build_op(class, op.op(), &operands)
            }
            Kind::Encrypt => self.build_encrypted(class, node.children[0]),
        }
    }

    /// The single values of built operand classes.
    fn operand_values(&self, children: &[Id]) -> Result<Vec<ValueRef>, RewriteError> {
        children
            .iter()
            .map(|c| {
                self.values(*c)?
                    .first()
                    .copied()
                    .ok_or_else(|| RewriteError::Extraction(format!("e-class {c} has no value")))
            })
            .collect()
    }

    /// A fresh node computing the public e-class `of`, typed encrypted (its public version, if
    /// also needed, is built apart: public users must not read a ciphertext).
    fn build_encrypted(&mut self, class: Id, of: Id) -> Result<Vec<ValueRef>, RewriteError> {
        let node = self.best(self.egraph.find(of))?;
        let Kind::Op(op) = &node.kind else {
            return Err(RewriteError::Unsupported(
                "only computed values can be encrypted by the client".into(),
            ));
        };
        let operands = self.operand_values(&node.children)?;
        let values = self.build_op(class, op.op(), &operands)?;
        for value in &values {
            let ty = &mut self.graph.node_mut(value.node).outputs[value.output];
            ty.secrecy = cachemir_ir::Secrecy::Encrypted;
        }
        Ok(values)
    }

    /// Copies a source leaf (inputs were copied up front).
    fn build_leaf(&mut self, index: usize) -> Result<ValueRef, RewriteError> {
        let value = *self
            .encoded
            .leaves
            .get(index)
            .ok_or_else(|| RewriteError::Extraction(format!("no leaf {index}")))?;
        if let Some(copy) = self.leaf_values.get(&value) {
            return Ok(*copy);
        }
        let n = self.source.node(value.node);
        let name = self.fresh_name(&n.output_names[0]);
        let copy = match &n.op {
            Op::Constant(t) => self.graph.add_constant(name, t.clone(), n.source.clone()),
            Op::SyntheticWeight { dtype, shape, seed } => self.graph.add_synthetic_weight(
                name,
                *dtype,
                shape.clone(),
                *seed,
                n.source.clone(),
            ),
            other => {
                return Err(RewriteError::Extraction(format!(
                    "leaf {index} is a {} node",
                    other.name()
                )));
            }
        };
        self.copy_annotations(value, copy);
        self.leaf_values.insert(value, copy);
        self.roots.insert(copy, n.output_names[0].clone());
        Ok(copy)
    }

    /// Adds `op` on `operands` (or its folded value), named after the e-class's source value.
    fn build_op(
        &mut self,
        class: Id,
        op: &Op,
        operands: &[ValueRef],
    ) -> Result<Vec<ValueRef>, RewriteError> {
        let original = self.originals.get(&class).copied();
        // A value of the source graph keeps its name and location; a new one is named after
        // the source value it derives from (through its first operand) and the op.
        let root = operands
            .first()
            .and_then(|v| self.roots.get(v))
            .cloned()
            .unwrap_or_else(|| "rewrite".to_string());
        let (base, source, root) = match original {
            Some(v) => {
                let name = self.source.value_name(v).unwrap_or("rewrite").to_string();
                (name.clone(), self.source.node(v.node).source.clone(), name)
            }
            None => (
                format!("{root}/{}", op.name()),
                SourceLocation::Synthetic("rewrite".into()),
                root,
            ),
        };
        if let Some(tensors) = self.fold(op, operands)? {
            self.folded += 1;
            let values: Vec<ValueRef> = tensors
                .into_iter()
                .map(|t| {
                    let name = self.fresh_name(&base);
                    self.graph.add_constant(name, t, source.clone())
                })
                .collect();
            for v in &values {
                self.roots.insert(*v, root.clone());
            }
            return Ok(values);
        }
        let count = op.output_count();
        let names: Vec<String> = (0..count)
            .map(|i| {
                let preferred = match original {
                    Some(_) if count == 1 => base.clone(),
                    Some(v) => self
                        .source
                        .node(v.node)
                        .output_names
                        .get(i)
                        .cloned()
                        .unwrap_or_else(|| base.clone()),
                    None => base.clone(),
                };
                self.fresh_name(&preferred)
            })
            .collect();
        let values = self
            .graph
            .add_node(op.clone(), operands, names, source)
            .map_err(|e| RewriteError::Extraction(e.to_string()))?;
        if let Some(v) = original.filter(|_| count == 1) {
            self.copy_annotations(v, values[0]);
        }
        for v in &values {
            self.roots.insert(*v, root.clone());
        }
        Ok(values)
    }

    /// The value of `op` when every operand is a `Constant` and the result is not much larger.
    fn fold(&self, op: &Op, operands: &[ValueRef]) -> Result<Option<Vec<Tensor>>, RewriteError> {
        let tensors: Option<Vec<&Tensor>> =
            operands.iter().map(|v| self.graph.constant(*v)).collect();
        let Some(tensors) = tensors.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let types = cachemir_ir::infer::infer(
            op,
            &operands
                .iter()
                .filter_map(|v| self.graph.value_type(*v).cloned())
                .collect::<Vec<_>>(),
        )
        .map_err(|e| RewriteError::Extraction(e.to_string()))?;
        let largest = tensors
            .iter()
            .map(|t| t.len())
            .max()
            .unwrap_or(0)
            .max(FOLD_LIMIT);
        if types.iter().any(|t| t.len() > largest) {
            return Ok(None);
        }
        let values: Vec<Value> = tensors.iter().map(|t| Value::from_tensor(t)).collect();
        let refs: Vec<&Value> = values.iter().collect();
        let results = eval_op(op, &refs).map_err(|message| {
            RewriteError::Extraction(format!("folding {}: {message}", op.name()))
        })?;
        results
            .into_iter()
            .zip(&types)
            .map(|(v, ty)| v.into_tensor(ty.dtype).map_err(RewriteError::Extraction))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// `preferred` if no value has that name yet, else `preferred#k`.
    fn fresh_name(&mut self, preferred: &str) -> String {
        let mut name = preferred.to_string();
        let mut k = 1;
        while self.names.contains(&name) {
            name = format!("{preferred}#{k}");
            k += 1;
        }
        self.names.insert(name.clone());
        name
    }

    /// Copies the author's hints and the calibrated range of a source value.
    fn copy_annotations(&mut self, from: ValueRef, to: ValueRef) {
        let source = self.source.node(from.node);
        let node = self.graph.node_mut(to.node);
        node.hints = source.hints.clone();
        node.calibrated_ranges = source.calibrated_ranges.clone();
    }
}
