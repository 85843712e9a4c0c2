//! The Tensor IR graph: a DAG of [`Node`]s on petgraph's `StableDiGraph`, where an edge carries
//! which output of its source feeds which operand of its target.

use crate::dtype::{Secrecy, TensorType};
use crate::error::IrError;
use crate::infer::infer;
use crate::op::Op;
use crate::tensor::Tensor;
use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// One output of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValueRef {
    pub node: NodeIndex,
    pub output: usize,
}

/// Where a node came from, for diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceLocation {
    /// An ONNX node, by its name (or `op_type#index` when the exporter left it unnamed).
    Onnx { node: String },
    /// A DSL statement.
    Dsl {
        file: String,
        line: usize,
        column: usize,
    },
    /// Made by a pass or by hand; the text says which.
    Synthetic(String),
}

impl std::fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceLocation::Onnx { node } => write!(f, "{node}"),
            SourceLocation::Dsl { file, line, column } => write!(f, "{file}:{line}:{column}"),
            SourceLocation::Synthetic(what) => write!(f, "<{what}>"),
        }
    }
}

/// What the model's author knows about a value (DSL `@range(lo, hi)`, `@precision(bits)`):
/// calibration and polynomial approximation use it instead of, or to check, measured ranges.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hints {
    /// Every element lies in `[low, high]`.
    pub range: Option<(f64, f64)>,
    /// Bits of precision the value needs.
    pub precision_bits: Option<u32>,
}

impl Hints {
    pub fn is_empty(&self) -> bool {
        self.range.is_none() && self.precision_bits.is_none()
    }
}

/// An operation with its typed, named outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub op: Op,
    pub source: SourceLocation,
    /// Name of each output value (ONNX tensor names where the graph came from ONNX).
    pub output_names: Vec<String>,
    pub outputs: Vec<TensorType>,
    /// Author-given facts about the (first) output.
    #[serde(default, skip_serializing_if = "Hints::is_empty")]
    pub hints: Hints,
    /// `[min, max]` of each output over the calibration set, before any margin (empty before
    /// calibration; read with [`Graph::calibrated_range`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calibrated_ranges: Vec<Option<(f64, f64)>>,
}

/// The operand edge: output `output` of the source feeds operand `operand` of the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operand {
    pub output: usize,
    pub operand: usize,
}

/// What a graph input is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputRole {
    /// A per-call input.
    Input,
    /// KV-cache state carried across decode steps: replaced after each step by the named output.
    State { output: String },
}

/// What a graph output is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputRole {
    Output,
    /// The next value of the named state input (the updated KV cache).
    State {
        input: String,
    },
}

/// A graph input: an `Op::Input` node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphInput {
    pub node: NodeIndex,
    pub role: InputRole,
}

/// A named graph output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphOutput {
    pub name: String,
    pub value: ValueRef,
    pub role: OutputRole,
}

/// A Tensor IR program: nodes, ordered inputs and named outputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Graph {
    pub name: String,
    dag: StableDiGraph<Node, Operand>,
    inputs: Vec<GraphInput>,
    outputs: Vec<GraphOutput>,
    /// Nodes the client encrypts although their operands are public ([`Graph::encrypt_from`]).
    #[serde(default)]
    encrypted_from: Vec<NodeIndex>,
}

impl Graph {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            dag: StableDiGraph::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            encrypted_from: Vec::new(),
        }
    }

    /// Adds a graph input of the given type.
    pub fn add_input(
        &mut self,
        name: impl Into<String>,
        ty: TensorType,
        role: InputRole,
        source: SourceLocation,
    ) -> ValueRef {
        let node = self.dag.add_node(Node {
            op: Op::Input,
            source,
            output_names: vec![name.into()],
            outputs: vec![ty],
            hints: Hints::default(),
            calibrated_ranges: Vec::new(),
        });
        self.inputs.push(GraphInput { node, role });
        ValueRef { node, output: 0 }
    }

    /// Adds a public constant (a weight or a folded value).
    pub fn add_constant(
        &mut self,
        name: impl Into<String>,
        tensor: Tensor,
        source: SourceLocation,
    ) -> ValueRef {
        let ty = TensorType::new(tensor.dtype(), tensor.shape().to_vec(), Secrecy::Public);
        self.add_leaf(Op::Constant(tensor), ty, name.into(), source)
    }

    /// Adds a shape-only weight (see [`Op::SyntheticWeight`]); nothing is allocated.
    pub fn add_synthetic_weight(
        &mut self,
        name: impl Into<String>,
        dtype: crate::dtype::DType,
        shape: Vec<usize>,
        seed: u64,
        source: SourceLocation,
    ) -> ValueRef {
        let ty = TensorType::new(dtype, shape.clone(), Secrecy::Public);
        self.add_leaf(
            Op::SyntheticWeight { dtype, shape, seed },
            ty,
            name.into(),
            source,
        )
    }

    /// Adds a node without operands (a constant or a synthetic weight).
    fn add_leaf(
        &mut self,
        op: Op,
        ty: TensorType,
        name: String,
        source: SourceLocation,
    ) -> ValueRef {
        let node = self.dag.add_node(Node {
            op,
            source,
            output_names: vec![name],
            outputs: vec![ty],
            hints: Hints::default(),
            calibrated_ranges: Vec::new(),
        });
        ValueRef { node, output: 0 }
    }

    /// Adds an op applied to `operands`, inferring its output types.
    ///
    /// `output_names` names each output; missing names are derived from the source location.
    ///
    /// # Errors
    /// [`IrError::Shape`] naming the node when shape inference rejects the operands, and
    /// [`IrError::Malformed`] for an operand that does not exist.
    pub fn add_node(
        &mut self,
        op: Op,
        operands: &[ValueRef],
        output_names: Vec<String>,
        source: SourceLocation,
    ) -> Result<Vec<ValueRef>, IrError> {
        let types = operands
            .iter()
            .map(|v| self.value_type(*v).cloned())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| IrError::Malformed(format!("{source}: operand does not exist")))?;
        let outputs = infer(&op, &types).map_err(|e| IrError::Shape {
            node: source.to_string(),
            op: op.name(),
            source: e,
        })?;
        let mut names = output_names;
        for i in names.len()..outputs.len() {
            names.push(format!("{source}:{i}"));
        }
        let node = self.dag.add_node(Node {
            op,
            source,
            output_names: names,
            outputs,
            hints: Hints::default(),
            calibrated_ranges: Vec::new(),
        });
        for (operand, value) in operands.iter().enumerate() {
            self.dag.add_edge(
                value.node,
                node,
                Operand {
                    output: value.output,
                    operand,
                },
            );
        }
        let count = self.dag[node].outputs.len();
        Ok((0..count).map(|output| ValueRef { node, output }).collect())
    }

    /// Declares `value` a graph output.
    pub fn add_output(&mut self, name: impl Into<String>, value: ValueRef, role: OutputRole) {
        self.outputs.push(GraphOutput {
            name: name.into(),
            value,
            role,
        });
    }

    /// Makes output `index`, the next value of a KV-cache state, the value `value` under the name
    /// `name`, renaming it in the state input's role too.
    ///
    /// # Errors
    /// [`IrError::Malformed`] when `index` is not a state output or `value` does not exist.
    pub fn replace_state_output(
        &mut self,
        index: usize,
        name: String,
        value: ValueRef,
    ) -> Result<(), IrError> {
        if self.value_type(value).is_none() {
            return Err(IrError::Malformed(format!("{name}: value does not exist")));
        }
        let output = self
            .outputs
            .get_mut(index)
            .ok_or_else(|| IrError::Malformed(format!("no output {index}")))?;
        let OutputRole::State { input } = &output.role else {
            return Err(IrError::Malformed(format!(
                "output `{}` is not a KV-cache state",
                output.name
            )));
        };
        let input = input.clone();
        let old = std::mem::replace(&mut output.name, name.clone());
        output.value = value;
        for graph_input in &mut self.inputs {
            if let InputRole::State { output } = &mut graph_input.role
                && *output == old
                && self.dag[graph_input.node].output_names[0] == input
            {
                *output = name.clone();
            }
        }
        Ok(())
    }

    pub fn inputs(&self) -> &[GraphInput] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[GraphOutput] {
        &self.outputs
    }

    pub fn node(&self, index: NodeIndex) -> &Node {
        &self.dag[index]
    }

    /// Mutable access to a node, for passes that rename or re-attribute it. Changing its op so
    /// that its output types change is the caller's responsibility to re-check.
    pub fn node_mut(&mut self, index: NodeIndex) -> &mut Node {
        &mut self.dag[index]
    }

    pub fn node_count(&self) -> usize {
        self.dag.node_count()
    }

    /// Name of a graph input.
    pub fn input_name(&self, input: &GraphInput) -> &str {
        &self.dag[input.node].output_names[0]
    }

    /// Type of a graph input.
    pub fn input_type(&self, input: &GraphInput) -> &TensorType {
        &self.dag[input.node].outputs[0]
    }

    /// Type of a value, if it exists.
    pub fn value_type(&self, value: ValueRef) -> Option<&TensorType> {
        self.dag.node_weight(value.node)?.outputs.get(value.output)
    }

    /// Name of a value, if it exists.
    pub fn value_name(&self, value: ValueRef) -> Option<&str> {
        self.dag
            .node_weight(value.node)?
            .output_names
            .get(value.output)
            .map(String::as_str)
    }

    /// The value with this name.
    pub fn find_value(&self, name: &str) -> Option<ValueRef> {
        self.dag.node_indices().find_map(|node| {
            self.dag[node]
                .output_names
                .iter()
                .position(|n| n == name)
                .map(|output| ValueRef { node, output })
        })
    }

    /// The node's operands in order.
    pub fn operands(&self, node: NodeIndex) -> Vec<ValueRef> {
        let mut edges: Vec<(usize, ValueRef)> = self
            .dag
            .edges_directed(node, Direction::Incoming)
            .map(|e| {
                (
                    e.weight().operand,
                    ValueRef {
                        node: e.source(),
                        output: e.weight().output,
                    },
                )
            })
            .collect();
        edges.sort_unstable_by_key(|(operand, _)| *operand);
        edges.into_iter().map(|(_, v)| v).collect()
    }

    /// Nodes that read any output of `node`.
    pub fn users(&self, node: NodeIndex) -> Vec<NodeIndex> {
        let mut users: Vec<NodeIndex> = self
            .dag
            .neighbors_directed(node, Direction::Outgoing)
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// All nodes in a topological order (operands before users); ties broken by insertion order,
    /// so the order is stable across runs.
    pub fn topological_order(&self) -> Vec<NodeIndex> {
        let mut pending: HashMap<NodeIndex, usize> = HashMap::new();
        let mut ready = std::collections::BinaryHeap::new();
        for node in self.dag.node_indices() {
            let count = self.dag.edges_directed(node, Direction::Incoming).count();
            if count == 0 {
                ready.push(std::cmp::Reverse(node));
            } else {
                pending.insert(node, count);
            }
        }
        let mut order = Vec::with_capacity(self.dag.node_count());
        while let Some(std::cmp::Reverse(node)) = ready.pop() {
            order.push(node);
            for edge in self.dag.edges_directed(node, Direction::Outgoing) {
                let count = pending.get_mut(&edge.target()).expect("counted");
                *count -= 1;
                if *count == 0 {
                    ready.push(std::cmp::Reverse(edge.target()));
                }
            }
        }
        order
    }

    /// Makes every user of `from` (operands and graph outputs) read `to` instead. The node
    /// computing `from` stays until [`Graph::prune`] removes it.
    ///
    /// # Errors
    /// [`IrError::Malformed`] when the two values differ in type.
    pub fn replace_uses(&mut self, from: ValueRef, to: ValueRef) -> Result<(), IrError> {
        let (from_type, to_type) = (self.value_type(from), self.value_type(to));
        if from_type.is_none() || from_type != to_type {
            return Err(IrError::Malformed(format!(
                "cannot replace a value of type {from_type:?} by one of type {to_type:?}"
            )));
        }
        let uses: Vec<_> = self
            .dag
            .edges_directed(from.node, Direction::Outgoing)
            .filter(|e| e.weight().output == from.output)
            .map(|e| (e.id(), e.target(), e.weight().operand))
            .collect();
        for (edge, target, operand) in uses {
            self.dag.remove_edge(edge);
            self.dag.add_edge(
                to.node,
                target,
                Operand {
                    output: to.output,
                    operand,
                },
            );
        }
        for output in &mut self.outputs {
            if output.value == from {
                output.value = to;
            }
        }
        Ok(())
    }

    /// Number of operand slots that read `value` plus the graph outputs that are `value`.
    pub fn use_count(&self, value: ValueRef) -> usize {
        let operand_uses = self
            .dag
            .edges_directed(value.node, Direction::Outgoing)
            .filter(|e| e.weight().output == value.output)
            .count();
        operand_uses + self.outputs.iter().filter(|o| o.value == value).count()
    }

    /// The calibrated `[min, max]` of a value, if calibration measured it.
    pub fn calibrated_range(&self, value: ValueRef) -> Option<(f64, f64)> {
        self.dag
            .node_weight(value.node)?
            .calibrated_ranges
            .get(value.output)
            .copied()
            .flatten()
    }

    /// Records (or clears) the calibrated range of a value.
    pub fn set_calibrated_range(&mut self, value: ValueRef, range: Option<(f64, f64)>) {
        let node = &mut self.dag[value.node];
        let count = node.outputs.len();
        node.calibrated_ranges.resize(count, None);
        if let Some(slot) = node.calibrated_ranges.get_mut(value.output) {
            *slot = range;
        }
    }

    /// The constant tensor behind a value, if it is one.
    pub fn constant(&self, value: ValueRef) -> Option<&Tensor> {
        match &self.dag.node_weight(value.node)?.op {
            Op::Constant(t) => Some(t),
            _ => None,
        }
    }

    /// Every node index, in insertion order.
    pub fn node_indices(&self) -> Vec<NodeIndex> {
        self.dag.node_indices().collect()
    }

    /// Removes every node that no output needs, except graph inputs, which are removed only
    /// when `drop_unused_inputs` is set. Returns the number of nodes removed.
    pub fn prune(&mut self, drop_unused_inputs: bool) -> usize {
        let mut live: HashSet<NodeIndex> = HashSet::new();
        let mut stack: Vec<NodeIndex> = self.outputs.iter().map(|o| o.value.node).collect();
        while let Some(node) = stack.pop() {
            if live.insert(node) {
                stack.extend(self.dag.neighbors_directed(node, Direction::Incoming));
            }
        }
        let inputs: HashSet<NodeIndex> = self.inputs.iter().map(|i| i.node).collect();
        let dead: Vec<NodeIndex> = self
            .dag
            .node_indices()
            .filter(|n| !live.contains(n) && (drop_unused_inputs || !inputs.contains(n)))
            .collect();
        for node in &dead {
            self.dag.remove_node(*node);
        }
        self.inputs
            .retain(|i| live.contains(&i.node) || !drop_unused_inputs);
        dead.len()
    }

    /// Turns the named value into a graph input of the same type: its users read the new input,
    /// and whatever computed it is dropped by a later [`Graph::prune`].
    ///
    /// # Errors
    /// [`IrError::UnknownValue`] for a name no value carries.
    pub fn cut_at(&mut self, name: &str) -> Result<ValueRef, IrError> {
        let value = self
            .find_value(name)
            .ok_or_else(|| IrError::UnknownValue(name.to_string()))?;
        let ty = self.value_type(value).expect("found").clone();
        let source = SourceLocation::Synthetic(format!("cut at {name}"));
        let input = self.add_input(name, ty, InputRole::Input, source);
        self.replace_uses(value, input)?;
        Ok(input)
    }

    /// The subgraph from `input_names` to `output_names` (like `onnx.utils.extract_model`):
    /// the named inputs become graph inputs ([`Graph::cut_at`]), the named outputs become the
    /// outputs, and every node and input they do not need is dropped. A state input whose paired
    /// output is gone becomes a plain input.
    ///
    /// # Errors
    /// [`IrError::UnknownValue`] for a name no value carries.
    pub fn extract(
        &self,
        input_names: &[String],
        output_names: &[String],
    ) -> Result<Graph, IrError> {
        let mut graph = self.clone();
        for name in input_names {
            graph.cut_at(name)?;
        }
        let source = graph.clone();
        let mut outputs = Vec::with_capacity(output_names.len());
        for name in output_names {
            let value = source
                .find_value(name)
                .ok_or_else(|| IrError::UnknownValue(name.clone()))?;
            let role = source
                .outputs
                .iter()
                .find(|o| &o.name == name)
                .map_or(OutputRole::Output, |o| o.role.clone());
            outputs.push(GraphOutput {
                name: name.clone(),
                value,
                role,
            });
        }
        graph.outputs = outputs;
        graph.prune(true);
        let kept: HashSet<String> = graph.outputs.iter().map(|o| o.name.clone()).collect();
        let input_names: HashSet<String> = graph
            .inputs
            .iter()
            .map(|i| graph.input_name(i).to_string())
            .collect();
        for input in &mut graph.inputs {
            if let InputRole::State { output } = &input.role
                && !kept.contains(output)
            {
                input.role = InputRole::Input;
            }
        }
        for output in &mut graph.outputs {
            if let OutputRole::State { input } = &output.role
                && !input_names.contains(input)
            {
                output.role = OutputRole::Output;
            }
        }
        Ok(graph)
    }

    /// Number of nodes per op name, sorted by name.
    pub fn op_histogram(&self) -> BTreeMap<String, usize> {
        let mut histogram = BTreeMap::new();
        for node in self.dag.node_weights() {
            *histogram.entry(node.op.name()).or_insert(0) += 1;
        }
        histogram
    }

    /// Total bytes of constant tensors (weights and folded constants, synthetic weights at
    /// the size they would have).
    pub fn constant_bytes(&self) -> usize {
        self.dag
            .node_weights()
            .map(|n| match &n.op {
                Op::Constant(t) => t.size_bytes(),
                Op::SyntheticWeight { .. } => n.outputs[0].size_bytes(),
                _ => 0,
            })
            .sum()
    }

    /// Marks graph inputs as encrypted or public and re-derives every node's output secrecy.
    pub fn set_input_secrecy(&mut self, secrecy_of: impl Fn(&str, &TensorType) -> Secrecy) {
        for input in self.inputs.clone() {
            let node = &mut self.dag[input.node];
            node.outputs[0].secrecy = secrecy_of(&node.output_names[0], &node.outputs[0]);
        }
        self.propagate_secrecy();
    }

    /// Makes the named value encrypted (and everything computed from it): the client computes
    /// what comes before it in the clear — e.g. the token embedding — and encrypts it there.
    ///
    /// # Errors
    /// [`IrError::UnknownValue`] for a name no value carries.
    pub fn encrypt_from(&mut self, name: &str) -> Result<(), IrError> {
        let value = self
            .find_value(name)
            .ok_or_else(|| IrError::UnknownValue(name.to_string()))?;
        if !self.encrypted_from.contains(&value.node) {
            self.encrypted_from.push(value.node);
        }
        self.propagate_secrecy();
        Ok(())
    }

    /// Re-derives every computed value's secrecy from its operands; the nodes of
    /// [`Graph::encrypt_from`] are encrypted whatever their operands.
    fn propagate_secrecy(&mut self) {
        for node in self.topological_order() {
            if self.encrypted_from.contains(&node) {
                for ty in &mut self.dag[node].outputs {
                    ty.secrecy = Secrecy::Encrypted;
                }
                continue;
            }
            if matches!(self.dag[node].op, Op::Input) || self.dag[node].op.is_constant() {
                continue;
            }
            let joined = Secrecy::join(
                self.operands(node)
                    .iter()
                    .map(|v| self.value_type(*v).expect("operand exists").secrecy),
            );
            for ty in &mut self.dag[node].outputs {
                ty.secrecy = joined;
            }
        }
    }

    /// Checks the graph's invariants: operands exist, every node's types equal what inference
    /// gives, no cycle, outputs exist.
    ///
    /// # Errors
    /// The first violation found.
    pub fn verify(&self) -> Result<(), IrError> {
        let order = self.topological_order();
        if order.len() != self.dag.node_count() {
            return Err(IrError::Malformed("the graph has a cycle".into()));
        }
        for node in order {
            let n = &self.dag[node];
            if n.output_names.len() != n.outputs.len() {
                return Err(IrError::Malformed(format!(
                    "{}: {} names for {} outputs",
                    n.source,
                    n.output_names.len(),
                    n.outputs.len()
                )));
            }
            let malformed = |what: &str| Err(IrError::Malformed(format!("{}: {what}", n.source)));
            let declared = &n.outputs[0];
            match &n.op {
                Op::Input => continue,
                Op::Constant(t) => {
                    if n.outputs.len() != 1
                        || t.dtype() != declared.dtype
                        || t.shape() != declared.shape.as_slice()
                    {
                        return malformed("constant data differs from its declared type");
                    }
                    continue;
                }
                Op::SyntheticWeight { dtype, shape, .. } => {
                    if n.outputs.len() != 1 || *dtype != declared.dtype || *shape != declared.shape
                    {
                        return malformed("synthetic weight differs from its declared type");
                    }
                    continue;
                }
                _ => {}
            }
            // Operand slots are 0, 1, …, each filled once (the edges carry them).
            let mut slots: Vec<usize> = self
                .dag
                .edges_directed(node, Direction::Incoming)
                .map(|e| e.weight().operand)
                .collect();
            slots.sort_unstable();
            if slots.iter().enumerate().any(|(i, &s)| i != s) {
                return malformed("operands are not numbered 0, 1, … once each");
            }
            let types: Vec<TensorType> = self
                .operands(node)
                .iter()
                .map(|v| self.value_type(*v).cloned())
                .collect::<Option<_>>()
                .ok_or_else(|| IrError::Malformed(format!("{}: dangling operand", n.source)))?;
            let inferred = infer(&n.op, &types).map_err(|e| IrError::Shape {
                node: n.source.to_string(),
                op: n.op.name(),
                source: e,
            })?;
            // A value may be encrypted although its operands are public (`encrypt_from`: the
            // client encrypts there), never the other way round.
            let consistent = inferred.len() == n.outputs.len()
                && inferred.iter().zip(&n.outputs).all(|(i, r)| {
                    i.dtype == r.dtype && i.shape == r.shape && r.secrecy >= i.secrecy
                });
            if !consistent {
                return Err(IrError::Malformed(format!(
                    "{}: recorded types differ from inferred ones",
                    n.source
                )));
            }
        }
        for input in &self.inputs {
            if !self
                .dag
                .node_weight(input.node)
                .is_some_and(|n| matches!(n.op, Op::Input))
            {
                return Err(IrError::Malformed(
                    "a graph input is not an input node".into(),
                ));
            }
        }
        for output in &self.outputs {
            if self.value_type(output.value).is_none() {
                return Err(IrError::Malformed(format!(
                    "output `{}` refers to a removed value",
                    output.name
                )));
            }
        }
        Ok(())
    }
}
