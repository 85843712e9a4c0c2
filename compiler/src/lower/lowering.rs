//! The lowering driver: walks an approximated Tensor IR graph in topological order and emits the
//! plan. The client program (everything before the encrypted values the client makes) and the
//! public program (public values the encrypted part reads) are cut out of the graph as Tensor IR;
//! constants become weights read by reference.

use super::select::{choose_period, kv_cache, rows_interleaved, stacked_rows};
use super::value::Value;
use super::{Builder, Counts, Interface};
use cachemir_ir::plan::{Ciphertexts, Plan, State, TensorRef};
use cachemir_ir::{Graph, InputRole, IrError, NodeIndex, Op, OutputRole, Secrecy, ValueRef};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What lowering needs to know besides the graph.
#[derive(Debug, Clone)]
pub struct LowerOptions {
    /// Slots per ciphertext (a power of two; N/2 at full packing).
    pub slots: usize,
    /// The interleaved period of activations; chosen by cost when `None`.
    pub period: Option<usize>,
    /// The plan's weights file name (relative to the plan).
    pub weights_file: String,
}

/// Errors: an op or operand combination the slot-level compiler cannot lower, named by node.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error("{node} ({op}): {reason}")]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    #[error(transparent)]
    Ir(#[from] IrError),
    #[error("slot count {0} is not a power of two")]
    Slots(usize),
}

/// Where a weight's values come from.
#[derive(Debug, Clone, PartialEq)]
pub enum WeightSource {
    /// A constant or synthetic weight of the graph, as is.
    Value(ValueRef),
    /// The transpose of a 2-D weight, times `scale` (Gemm's `transB` and `alpha`).
    Transposed { value: ValueRef, scale: f64 },
    /// Element-wise reciprocal (division by a constant).
    Reciprocal(ValueRef),
    /// Times a scalar (Gemm's `alpha`, `beta`).
    Scaled { value: ValueRef, scale: f64 },
}

/// One kernel instance, for reports and snapshots.
#[derive(Debug, Clone, Serialize)]
pub struct KernelRecord {
    pub site: String,
    pub kernel: String,
    pub counts: Counts,
}

/// The result of lowering.
#[derive(Debug, Clone)]
pub struct Lowered {
    pub plan: Plan,
    /// Name → source of every weight the plan reads.
    pub weights: BTreeMap<String, WeightSource>,
    /// The interleaved period chosen.
    pub period: usize,
    pub kernels: Vec<KernelRecord>,
    /// Counts per Tensor IR node (name, layer, counts), in lowering order.
    pub site_counts: Vec<(String, Option<u32>, Counts)>,
}

/// Lowers `graph` (after the tensor-level passes: no softmax, norms or non-polynomial
/// activations left on encrypted values) to a plan.
///
/// # Errors
/// [`LowerError::Unsupported`] naming the node of an op the slot level cannot lower.
pub fn lower(graph: &Graph, options: &LowerOptions) -> Result<Lowered, LowerError> {
    if !options.slots.is_power_of_two() {
        return Err(LowerError::Slots(options.slots));
    }
    let period = options
        .period
        .unwrap_or_else(|| choose_period(graph, options.slots))
        .min(options.slots);
    let mut lowering = Lowering {
        graph,
        b: Builder::new(options.slots),
        period,
        values: HashMap::new(),
        weights: BTreeMap::new(),
        public: Vec::new(),
        kernels: Vec::new(),
        head_dims: Vec::new(),
        site_counts: Vec::new(),
        input_free: Default::default(),
    };
    // `CACHEMIR_TRACE_LOWERING=MS` prints the nodes that take more than MS milliseconds to lower
    // (100 when MS is not a number).
    let trace: Option<f64> = std::env::var("CACHEMIR_TRACE_LOWERING")
        .ok()
        .map(|v| v.parse::<f64>().unwrap_or(100.0) / 1e3);
    let mut inputs: Vec<Ciphertexts> = Vec::new();
    let mut client_outputs: Vec<String> = Vec::new();
    let state_groups = lowering.state_groups();
    // Values are dropped after their last consumer: a long KV cache makes every layer's
    // attention values millions of slots, and keeping all layers' alive costs gigabytes.
    let mut uses: HashMap<ValueRef, usize> = HashMap::new();
    for node in graph.topological_order() {
        for operand in graph.operands(node) {
            *uses.entry(operand).or_insert(0) += 1;
        }
    }
    for output in graph.outputs() {
        *uses.entry(output.value).or_insert(0) += 1;
    }
    lowering.head_dims = state_groups.values().map(|(_, hd)| *hd).collect();
    for node in graph.topological_order() {
        let n = graph.node(node);
        if !n.outputs.iter().any(|t| t.secrecy == Secrecy::Encrypted) {
            continue;
        }
        lowering.b.enter_site(
            &n.output_names[0],
            &n.source.to_string(),
            layer_of(&n.output_names[0]),
        );
        let operands = graph.operands(node);
        let all_public = operands.iter().all(|v| !lowering.encrypted(*v));
        if matches!(n.op, Op::Input) || all_public {
            let name = n.output_names[0].clone();
            let shape = n.outputs[0].shape.clone();
            let layout = match state_groups.get(&node) {
                Some(&(group, _)) => kv_cache(&shape, options.slots, period, group),
                None => stacked_rows(&shape, options.slots, period),
            };
            let index = inputs.len() as u32;
            let registers = (0..layout.ciphertexts())
                .map(|c| lowering.b.load(index, c as u32))
                .collect();
            inputs.push(Ciphertexts {
                name: name.clone(),
                layout: layout.clone(),
                level: None,
            });
            if !matches!(n.op, Op::Input) {
                client_outputs.push(name);
            }
            lowering.values.insert(
                ValueRef { node, output: 0 },
                Value::Cipher(super::Cipher {
                    registers,
                    layout: Arc::new(layout),
                }),
            );
            continue;
        }
        let before = lowering.b.counts;
        let started = std::time::Instant::now();
        lowering.lower_node(node)?;
        for operand in &operands {
            let left = uses.get_mut(operand).expect("counted above");
            *left -= 1;
            if *left == 0 {
                lowering.values.remove(operand);
            }
        }
        if trace.is_some_and(|limit| started.elapsed().as_secs_f64() > limit) {
            eprintln!(
                "lowering {} ({}): {:.2?}",
                n.output_names[0],
                n.op.name(),
                started.elapsed()
            );
        }
        lowering.site_counts.push((
            n.output_names[0].clone(),
            layer_of(&n.output_names[0]),
            lowering.b.counts - before,
        ));
    }
    // Outputs: KV-cache states in the cache layout, the rest as they come.
    let mut outputs = Vec::new();
    let mut states = Vec::new();
    for (index, output) in graph.outputs().iter().enumerate() {
        let value =
            lowering
                .values
                .get(&output.value)
                .cloned()
                .ok_or_else(|| LowerError::Unsupported {
                    node: output.name.clone(),
                    op: "output".into(),
                    reason: "public outputs are not supported: the server returns ciphertexts only"
                        .into(),
                })?;
        lowering.b.enter_site(&output.name, "output", None);
        let cipher = match &output.role {
            OutputRole::State { input } => {
                states.push(State {
                    input: input.clone(),
                    output: output.name.clone(),
                });
                let input_node = graph
                    .inputs()
                    .iter()
                    .find(|i| graph.input_name(i) == input)
                    .map(|i| i.node);
                match input_node.and_then(|n| state_groups.get(&n)) {
                    Some(&(group, _)) => {
                        let target = kv_cache(value.shape(), options.slots, period, group);
                        value.gather_into(&mut lowering.b, &target, None)
                    }
                    None => lowering.materialize(&value),
                }
            }
            OutputRole::Output => lowering.materialize(&value),
        };
        let _ = index;
        let position = outputs.len() as u32;
        for (part, register) in cipher.registers.iter().enumerate() {
            lowering.b.store(*register, position, part as u32);
        }
        outputs.push(Ciphertexts {
            name: output.name.clone(),
            layout: (*cipher.layout).clone(),
            level: None,
        });
    }
    let client_program = program(graph, &client_outputs)?;
    let public_names: Vec<String> = lowering.public.clone();
    let public_graph = if public_names.is_empty() {
        None
    } else {
        Some(graph.extract(&[], &public_names)?)
    };
    let public_inputs = public_graph.as_ref().map_or(Vec::new(), |g| {
        g.inputs()
            .iter()
            .map(|i| g.input_name(i).to_string())
            .collect()
    });
    let public_program = match &public_graph {
        Some(g) => serde_json::to_string(g).expect("graphs serialize"),
        None => String::new(),
    };
    let weight_shapes = lowering
        .weights
        .iter()
        .map(|(name, source)| (name.clone(), weight_shape(graph, source)))
        .collect();
    let Lowering {
        b,
        weights,
        kernels,
        site_counts,
        ..
    } = lowering;
    let plan = b.finish(Interface {
        name: graph.name.clone(),
        parameters: None,
        weights: options.weights_file.clone(),
        weight_shapes,
        client_program,
        public_program,
        public_inputs,
        inputs,
        outputs,
        states,
    });
    Ok(Lowered {
        plan,
        weights,
        period,
        kernels,
        site_counts,
    })
}

/// The Tensor IR (JSON) computing `outputs` from the graph's inputs; empty when none.
fn program(graph: &Graph, outputs: &[String]) -> Result<String, LowerError> {
    if outputs.is_empty() {
        return Ok(String::new());
    }
    let extracted = graph.extract(&[], outputs)?;
    Ok(serde_json::to_string(&extracted).expect("graphs serialize"))
}

/// The layer number in a node name (`layers.3`, `layer.3`, `h.3`, DSL `i3.`), for per-layer
/// reports.
pub fn layer_of(name: &str) -> Option<u32> {
    // DSL loops name values `i0.q`, `i12.h/MatMul` (loop variable and index).
    let letters = name.chars().take_while(char::is_ascii_alphabetic).count();
    let digits: String = name[letters..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if letters > 0
        && !digits.is_empty()
        && name[letters + digits.len()..].starts_with('.')
        && let Ok(layer) = digits.parse()
    {
        return Some(layer);
    }
    for marker in ["layers.", "layer.", "/h."] {
        if let Some(at) = name.find(marker) {
            let digits: String = name[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(layer) = digits.parse() {
                return Some(layer);
            }
        }
    }
    None
}

fn weight_shape(graph: &Graph, source: &WeightSource) -> Vec<usize> {
    let shape = |v: &ValueRef| graph.value_type(*v).expect("typed").shape.clone();
    match source {
        WeightSource::Value(v)
        | WeightSource::Reciprocal(v)
        | WeightSource::Scaled { value: v, .. } => shape(v),
        WeightSource::Transposed { value, .. } => {
            let s = shape(value);
            vec![s[1], s[0]]
        }
    }
}

/// Lowering state shared by the op handlers in [`super::ops`].
pub(super) struct Lowering<'g> {
    pub graph: &'g Graph,
    pub b: Builder,
    pub period: usize,
    pub values: HashMap<ValueRef, Value>,
    pub weights: BTreeMap<String, WeightSource>,
    /// Names of public non-constant values the encrypted part reads (the public program's outputs).
    pub public: Vec<String>,
    pub kernels: Vec<KernelRecord>,
    /// Head dimensions of the KV caches (decode attention's product layout).
    pub head_dims: Vec<usize>,
    pub site_counts: Vec<(String, Option<u32>, Counts)>,
    input_free: std::cell::RefCell<HashMap<NodeIndex, bool>>,
}

impl Lowering<'_> {
    pub fn encrypted(&self, v: ValueRef) -> bool {
        self.graph
            .value_type(v)
            .is_some_and(|t| t.secrecy == Secrecy::Encrypted)
    }

    /// A value as ciphertexts; when it must be converted, into stacked rows, or one row per
    /// ciphertext for a broadcast view ([`Value::repeats_elements`]).
    pub fn materialize(&mut self, value: &Value) -> super::Cipher {
        let (slots, period) = (self.b.slots, self.period);
        if value.repeats_elements() {
            value.materialize(&mut self.b, &|shape| rows_interleaved(shape, slots, period))
        } else {
            value.materialize(&mut self.b, &|shape| stacked_rows(shape, slots, period))
        }
    }

    /// The tensor a plaintext reads for public operand `v`: a weight (constants) or a public
    /// value (computed by the public program), registered on first use.
    pub fn tensor_ref(&mut self, v: ValueRef) -> TensorRef {
        let name = self.graph.value_name(v).unwrap_or("unnamed").to_string();
        match self.graph.node(v.node).op {
            _ if self.input_free(v.node) => {
                self.weights
                    .entry(name.clone())
                    .or_insert(WeightSource::Value(v));
                TensorRef::Weight(name)
            }
            _ => {
                if !self.public.contains(&name) {
                    self.public.push(name.clone());
                }
                TensorRef::Public(name)
            }
        }
    }

    /// Whether a node depends on no graph input (constants, synthetic weights and what the
    /// rewrites folded into them): such values are weights, computed once when the weights file
    /// is written.
    pub fn input_free(&self, node: NodeIndex) -> bool {
        // Iterative post-order: graphs are thousands of nodes deep.
        let mut known = self.input_free.borrow_mut();
        let mut stack = vec![(node, false)];
        while let Some((n, expanded)) = stack.pop() {
            if known.contains_key(&n) {
                continue;
            }
            let leaf = match self.graph.node(n).op {
                Op::Input => Some(false),
                Op::Constant(_) | Op::SyntheticWeight { .. } => Some(true),
                _ => None,
            };
            if let Some(free) = leaf {
                known.insert(n, free);
                continue;
            }
            let operands = self.graph.operands(n);
            if expanded {
                let free = operands.iter().all(|v| known[&v.node]);
                known.insert(n, free);
            } else {
                stack.push((n, true));
                stack.extend(operands.iter().map(|v| (v.node, false)));
            }
        }
        known[&node]
    }

    /// For each KV-cache state input feeding a decode attention: (query heads per KV head,
    /// head dimension), when the heads fit one interleaved chunk.
    fn state_groups(&self) -> HashMap<NodeIndex, (usize, usize)> {
        let graph = self.graph;
        let mut groups = HashMap::new();
        for input in graph.inputs() {
            if !matches!(input.role, InputRole::State { .. }) {
                continue;
            }
            let shape = &graph.input_type(input).shape;
            if shape.len() != 4 || shape[0] != 1 {
                continue;
            }
            // Follow data movement to the attention product that reads the cache.
            let mut frontier = vec![input.node];
            let mut seen = std::collections::HashSet::new();
            while let Some(node) = frontier.pop() {
                if !seen.insert(node) {
                    continue;
                }
                for user in graph.users(node) {
                    let op = &graph.node(user).op;
                    if matches!(op, Op::MatMul) {
                        let out = &graph.node(user).outputs[0].shape;
                        let heads: usize = out[..out.len().saturating_sub(2)].iter().product();
                        let head_dim = shape[3];
                        let rows = out.get(out.len().wrapping_sub(2)).copied().unwrap_or(0);
                        if rows == 1
                            && heads.is_multiple_of(shape[1])
                            && heads * head_dim <= self.period
                        {
                            groups.insert(input.node, (heads / shape[1], head_dim));
                        }
                    } else if super::movement::is_movement(op) {
                        frontier.push(user);
                    }
                }
            }
        }
        groups
    }
}
