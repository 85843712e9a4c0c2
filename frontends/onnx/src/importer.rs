//! The import driver: symbol table of ONNX tensor names, per-node folding or emission, graph
//! inputs with bound dimensions, outputs and KV-cache state pairing.

use crate::error::OnnxError;
use crate::fold;
use crate::ops::{Lowered, lower};
use crate::proto::{Attributes, dtype_from_onnx, tensor_from_proto};
use crate::summary::ImportSummary;
use cachemir_ir::graph::GraphInput;
use cachemir_ir::interp::{Value, eval_op};
use cachemir_ir::{
    DType, Graph, InputRole, IrError, Op, OutputRole, Secrecy, SourceLocation, Tensor, TensorType,
    ValueRef, infer::infer,
};
use onnx_protobuf::{GraphProto, Message as _, ModelProto, NodeProto, ValueInfoProto};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// The opsets this importer implements for the default domain.
pub const SUPPORTED_OPSETS: std::ops::RangeInclusive<i64> = 13..=20;

/// What the user tells the importer.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Values of symbolic dimensions (`--dim sequence=16`).
    pub dims: HashMap<String, usize>,
    /// Concrete shapes of some inputs (e.g. from the `.npy` files of a case); they bind the
    /// symbolic dimensions they cover and are checked against the declared ranks.
    pub input_shapes: HashMap<String, Vec<usize>>,
    /// Keep only what these values need (`--outputs`), like `onnx.utils.extract_model`.
    pub outputs: Option<Vec<String>>,
    /// Values to turn into graph inputs (`--inputs-at`), cutting off what computed them; with
    /// `outputs` this extracts a subgraph such as one encoder layer.
    pub inputs_at: Vec<String>,
    /// Inputs to mark encrypted. `None`: float inputs (activations, KV cache) are encrypted and
    /// integer inputs (token ids, masks, positions) are public.
    pub encrypted: Option<Vec<String>>,
    /// Bind a decoder-with-past export (`optimum` convention) as one decode step of batch 1
    /// against a cache of `context − 1` positions: `input_ids` and `position_ids` `[1, 1]`,
    /// `attention_mask` `[1, context]`, `past_key_values.*` `[1, kv_heads, context − 1,
    /// head_dim]`.
    pub decode_context: Option<usize>,
}

/// The result of an import: the graph and what happened to it.
#[derive(Debug)]
pub struct Imported {
    pub graph: Graph,
    pub summary: ImportSummary,
}

/// Imports an ONNX file.
///
/// # Errors
/// Any [`OnnxError`]: unreadable or corrupt file, unsupported opset or op (naming the node),
/// unbound symbolic dimension, shape errors, data-dependent shapes.
pub fn import_file(path: &Path, options: &ImportOptions) -> Result<Imported, OnnxError> {
    let bytes = std::fs::read(path).map_err(|e| OnnxError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    import_bytes(&bytes, options)
}

/// Imports an ONNX model from its serialized bytes (see [`import_file`]).
pub fn import_bytes(bytes: &[u8], options: &ImportOptions) -> Result<Imported, OnnxError> {
    let model =
        ModelProto::parse_from_bytes(bytes).map_err(|e| OnnxError::Decode(e.to_string()))?;
    let graph_proto = model.graph.as_ref().ok_or(OnnxError::NoGraph)?;
    if graph_proto.node.is_empty() && graph_proto.output.is_empty() {
        return Err(OnnxError::NoGraph);
    }
    let opset = default_opset(&model)?;
    let mut importer = Importer::new(graph_proto, opset);
    importer.add_initializers(graph_proto)?;
    importer.add_inputs(graph_proto, options)?;
    let nodes = sorted_nodes(graph_proto)?;
    for (index, node) in &nodes {
        importer.import_node(node, *index)?;
    }
    importer.add_outputs(graph_proto)?;
    let folded_nodes = importer.folded_nodes;
    let mut graph = importer.graph;
    graph.prune(false);
    if options.outputs.is_some() || !options.inputs_at.is_empty() {
        let default_outputs: Vec<String> = graph.outputs().iter().map(|o| o.name.clone()).collect();
        let outputs = options.outputs.as_ref().unwrap_or(&default_outputs);
        graph = graph
            .extract(&options.inputs_at, outputs)
            .map_err(|e| match e {
                IrError::UnknownValue(name) => OnnxError::UnknownExtractOutput(name),
                other => OnnxError::Ir(other),
            })?;
    }
    apply_secrecy(&mut graph, options.encrypted.as_deref())?;
    graph.verify()?;
    let mut onnx_ops = BTreeMap::new();
    for node in &graph_proto.node {
        *onnx_ops.entry(node.op_type.clone()).or_insert(0) += 1;
    }
    let summary = ImportSummary {
        producer: format!("{} {}", model.producer_name, model.producer_version)
            .trim()
            .to_string(),
        opset,
        onnx_ops,
        folded_nodes,
    };
    Ok(Imported { graph, summary })
}

fn default_opset(model: &ModelProto) -> Result<i64, OnnxError> {
    let mut opset = None;
    for entry in &model.opset_import {
        if entry.domain.is_empty() || entry.domain == "ai.onnx" {
            opset = Some(entry.version);
        }
    }
    let version = opset.unwrap_or(0);
    if !SUPPORTED_OPSETS.contains(&version) {
        return Err(OnnxError::UnsupportedOpset {
            domain: "ai.onnx".into(),
            version,
        });
    }
    Ok(version)
}

/// Marks the listed inputs encrypted (all others public), or by default the float inputs
/// (activations, KV cache) encrypted and the integer ones (token ids, masks, positions) public.
fn apply_secrecy(graph: &mut Graph, encrypted: Option<&[String]>) -> Result<(), OnnxError> {
    if let Some(list) = encrypted {
        let known: HashSet<&str> = graph.inputs().iter().map(|i| graph.input_name(i)).collect();
        if let Some(unknown) = list.iter().find(|n| !known.contains(n.as_str())) {
            return Err(OnnxError::InputShape {
                input: unknown.clone(),
                message: "--encrypted names no graph input".into(),
            });
        }
    }
    graph.set_input_secrecy(|name, ty| {
        let encrypted = match encrypted {
            Some(list) => list.iter().any(|n| n == name),
            None => ty.dtype.is_float(),
        };
        if encrypted {
            Secrecy::Encrypted
        } else {
            Secrecy::Public
        }
    });
    Ok(())
}

/// Nodes in dependency order (the ONNX spec requires it, but not every tool obeys), each with
/// its index in the file. Reports a tensor that nothing produces.
fn sorted_nodes(graph: &GraphProto) -> Result<Vec<(usize, &NodeProto)>, OnnxError> {
    let mut available: HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    available.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    available.insert("");
    let mut pending: Vec<(usize, &NodeProto)> = graph.node.iter().enumerate().collect();
    let mut order = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for (index, node) in pending {
            if node.input.iter().all(|i| available.contains(i.as_str())) {
                available.extend(node.output.iter().map(String::as_str));
                order.push((index, node));
            } else {
                rest.push((index, node));
            }
        }
        if rest.len() == before {
            let (index, node) = rest[0];
            let missing = node
                .input
                .iter()
                .find(|i| !available.contains(i.as_str()))
                .expect("some input is missing");
            return Err(OnnxError::UnknownTensor {
                node: node_label(node, index),
                op_type: node.op_type.clone(),
                name: missing.clone(),
            });
        }
        pending = rest;
    }
    Ok(order)
}

/// The node's name, or `op_type#index` when the exporter left it unnamed.
pub(crate) fn node_label(node: &NodeProto, index: usize) -> String {
    if node.name.is_empty() {
        format!("{}#{index}", node.op_type)
    } else {
        node.name.clone()
    }
}

/// What an ONNX tensor name stands for during import.
#[derive(Debug, Clone)]
pub(crate) enum Slot {
    /// Known at import time: an initializer or a folded value.
    Constant(std::rc::Rc<Tensor>),
    /// Computed at run time by the graph.
    Value(ValueRef),
}

pub(crate) struct Importer {
    pub(crate) graph: Graph,
    slots: HashMap<String, Slot>,
    /// Constants already turned into graph nodes, by tensor name (a weight used twice is stored once).
    materialized: HashMap<String, ValueRef>,
    pub(crate) opset: i64,
    folded_nodes: usize,
    fresh: usize,
}

impl Importer {
    fn new(graph: &GraphProto, opset: i64) -> Self {
        let name = if graph.name.is_empty() {
            "model".to_string()
        } else {
            graph.name.clone()
        };
        Self {
            graph: Graph::new(name),
            slots: HashMap::new(),
            materialized: HashMap::new(),
            opset,
            folded_nodes: 0,
            fresh: 0,
        }
    }

    fn add_initializers(&mut self, graph: &GraphProto) -> Result<(), OnnxError> {
        for t in &graph.initializer {
            let tensor = tensor_from_proto(t)?;
            self.slots
                .insert(t.name.clone(), Slot::Constant(tensor.into()));
        }
        Ok(())
    }

    fn add_inputs(&mut self, graph: &GraphProto, options: &ImportOptions) -> Result<(), OnnxError> {
        let initializers: HashSet<&str> =
            graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<&ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .collect();
        let bindings = bind_dimensions(&inputs, options)?;
        let names: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
        let state_outputs: HashMap<String, String> = graph
            .output
            .iter()
            .filter_map(|o| state_input_for(&o.name, &names).map(|i| (i, o.name.clone())))
            .collect();
        for input in inputs {
            let (dtype, shape) = input_type(input, &bindings)?;
            let role = match state_outputs.get(&input.name) {
                Some(output) => InputRole::State {
                    output: output.clone(),
                },
                None => InputRole::Input,
            };
            let value = self.graph.add_input(
                input.name.clone(),
                TensorType::new(dtype, shape, Secrecy::Public),
                role,
                SourceLocation::Onnx {
                    node: format!("input {}", input.name),
                },
            );
            self.slots.insert(input.name.clone(), Slot::Value(value));
        }
        Ok(())
    }

    fn add_outputs(&mut self, graph: &GraphProto) -> Result<(), OnnxError> {
        let inputs: Vec<GraphInput> = self.graph.inputs().to_vec();
        for output in &graph.output {
            let value = match self.slots.get(&output.name).cloned() {
                Some(slot) => self.materialize(&output.name, &slot),
                None => return Err(OnnxError::UnknownOutput(output.name.clone())),
            };
            let state_of = inputs.iter().find_map(|i| match &i.role {
                InputRole::State { output: o } if *o == output.name => {
                    Some(self.graph.input_name(i).to_string())
                }
                _ => None,
            });
            let role = match state_of {
                Some(input) => OutputRole::State { input },
                None => OutputRole::Output,
            };
            self.graph.add_output(output.name.clone(), value, role);
        }
        Ok(())
    }

    /// The graph value for a slot, adding a `Constant` node the first time a constant is used
    /// by a run-time op.
    fn materialize(&mut self, name: &str, slot: &Slot) -> ValueRef {
        match slot {
            Slot::Value(v) => *v,
            Slot::Constant(t) => {
                if let Some(v) = self.materialized.get(name) {
                    return *v;
                }
                let v = self.graph.add_constant(
                    name,
                    (**t).clone(),
                    SourceLocation::Onnx {
                        node: name.to_string(),
                    },
                );
                self.materialized.insert(name.to_string(), v);
                v
            }
        }
    }

    pub(crate) fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.get(name)
    }

    /// Registers a constant made by a lowering (e.g. the zero of `Relu`) and returns its name.
    pub(crate) fn fresh_constant(&mut self, label: &str, tensor: Tensor) -> String {
        self.fresh += 1;
        let name = format!("{label}:const{}", self.fresh);
        self.slots
            .insert(name.clone(), Slot::Constant(tensor.into()));
        name
    }

    pub(crate) fn slot_type(&self, slot: &Slot) -> TensorType {
        match slot {
            Slot::Constant(t) => TensorType::new(t.dtype(), t.shape().to_vec(), Secrecy::Public),
            Slot::Value(v) => self
                .graph
                .value_type(*v)
                .expect("slot values exist")
                .clone(),
        }
    }

    fn import_node(&mut self, node: &NodeProto, index: usize) -> Result<(), OnnxError> {
        let label = node_label(node, index);
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(OnnxError::UnsupportedOp {
                node: label,
                op_type: node.op_type.clone(),
                domain: node.domain.clone(),
                opset: 0,
            });
        }
        let attributes = Attributes::new(node, &label);
        let lowered = lower(self, node, &attributes, &label)?;
        let results: Vec<Slot> = match lowered {
            Lowered::Constants(tensors) => {
                self.folded_nodes += 1;
                tensors
                    .into_iter()
                    .map(|t| Slot::Constant(t.into()))
                    .collect()
            }
            Lowered::Alias(names) => names.iter().map(|n| self.slots[n].clone()).collect(),
            Lowered::Op(op, operand_names) => {
                self.fold_or_emit(node, &label, op, &operand_names)?
            }
            Lowered::Replicate {
                input,
                leading_axes,
                copies,
            } => match self.slots[&input].clone() {
                Slot::Constant(t) => {
                    self.folded_nodes += 1;
                    let t = fold::replicate(&t, leading_axes, &copies).map_err(|message| {
                        OnnxError::Node {
                            node: label.clone(),
                            op_type: node.op_type.clone(),
                            message,
                        }
                    })?;
                    vec![Slot::Constant(t.into())]
                }
                Slot::Value(v) => {
                    let output = node.output.first().cloned().unwrap_or_default();
                    vec![Slot::Value(self.replicate(
                        v,
                        leading_axes,
                        &copies,
                        &label,
                        &output,
                    )?)]
                }
            },
        };
        let outputs: Vec<&String> = node.output.iter().filter(|o| !o.is_empty()).collect();
        if outputs.len() > results.len() {
            return Err(OnnxError::Node {
                node: label,
                op_type: node.op_type.clone(),
                message: format!(
                    "{} outputs requested, {} supported",
                    outputs.len(),
                    results.len()
                ),
            });
        }
        for (name, slot) in node.output.iter().zip(results) {
            if !name.is_empty() {
                self.slots.insert(name.clone(), slot);
            }
        }
        Ok(())
    }

    fn fold_or_emit(
        &mut self,
        node: &NodeProto,
        label: &str,
        op: Op,
        operand_names: &[String],
    ) -> Result<Vec<Slot>, OnnxError> {
        let slots: Vec<Slot> = operand_names
            .iter()
            .map(|n| self.slots[n].clone())
            .collect();
        let node_error = |message: String| OnnxError::Node {
            node: label.to_string(),
            op_type: node.op_type.clone(),
            message,
        };
        if slots.iter().all(|s| matches!(s, Slot::Constant(_))) {
            let types: Vec<TensorType> = slots.iter().map(|s| self.slot_type(s)).collect();
            let out_types = infer(&op, &types).map_err(|e| node_error(e.to_string()))?;
            let values: Vec<Value> = slots
                .iter()
                .map(|s| match s {
                    Slot::Constant(t) => Value::from_tensor(t),
                    Slot::Value(_) => unreachable!("all constants"),
                })
                .collect();
            let refs: Vec<&Value> = values.iter().collect();
            let results = eval_op(&op, &refs).map_err(node_error)?;
            self.folded_nodes += 1;
            return results
                .into_iter()
                .zip(out_types)
                .map(|(v, ty)| {
                    v.into_tensor(ty.dtype)
                        .map(|t| Slot::Constant(t.into()))
                        .map_err(node_error)
                })
                .collect();
        }
        let operands: Vec<ValueRef> = operand_names
            .iter()
            .zip(&slots)
            .map(|(name, slot)| self.materialize(name, slot))
            .collect();
        // Positions matter: an unused middle output (`""`) keeps its place under a made-up name.
        let names: Vec<String> = node
            .output
            .iter()
            .enumerate()
            .map(|(i, o)| {
                if o.is_empty() {
                    format!("{label}:{i}")
                } else {
                    o.clone()
                }
            })
            .collect();
        let values = self.graph.add_node(
            op,
            &operands,
            names,
            SourceLocation::Onnx {
                node: label.to_string(),
            },
        )?;
        Ok(values.into_iter().map(Slot::Value).collect())
    }
}

impl Importer {
    /// `value` replicated as explicit copies (see [`Lowered::Replicate`]): a `Reshape` adding
    /// `leading_axes` unit axes, then per repeated axis a `Concat` of the copies. The result is
    /// named `output`.
    fn replicate(
        &mut self,
        value: ValueRef,
        leading_axes: usize,
        copies: &[usize],
        label: &str,
        output: &str,
    ) -> Result<ValueRef, OnnxError> {
        let source = || SourceLocation::Onnx {
            node: label.to_string(),
        };
        let mut current = value;
        let mut steps: Vec<(Op, usize)> = Vec::new();
        if leading_axes > 0 {
            let mut padded = vec![1; leading_axes];
            padded.extend(&self.graph.value_type(value).expect("exists").shape);
            steps.push((Op::Reshape { shape: padded }, 1));
        }
        for (axis, &n) in copies.iter().enumerate() {
            if n != 1 {
                steps.push((Op::Concat { axis: axis as i64 }, n));
            }
        }
        let count = steps.len();
        for (i, (op, copies)) in steps.into_iter().enumerate() {
            let name = if i + 1 == count {
                output.to_string()
            } else {
                format!("{output}:broadcast{i}")
            };
            current = self
                .graph
                .add_node(op, &vec![current; copies], vec![name], source())?[0];
        }
        Ok(current)
    }
}

/// Binds every symbolic dimension from `--dim` values and the given input shapes, checking that
/// they agree.
fn bind_dimensions(
    inputs: &[&ValueInfoProto],
    options: &ImportOptions,
) -> Result<HashMap<String, usize>, OnnxError> {
    let mut bindings = options.dims.clone();
    if let Some(context) = options.decode_context {
        bind_decode_step(inputs, context, &mut bindings)?;
    }
    for input in inputs {
        let Some(shape) = options.input_shapes.get(&input.name) else {
            continue;
        };
        let dims = declared_dims(input)?;
        if dims.len() != shape.len() {
            return Err(OnnxError::InputShape {
                input: input.name.clone(),
                message: format!(
                    "the model declares rank {}, the given tensor has shape {shape:?} (rank {})",
                    dims.len(),
                    shape.len()
                ),
            });
        }
        for (axis, (dim, &size)) in dims.iter().zip(shape).enumerate() {
            if let Dim::Fixed(declared) = dim
                && *declared != size
            {
                return Err(OnnxError::InputShape {
                    input: input.name.clone(),
                    message: format!(
                        "axis {axis} is {declared} in the model, the given tensor has {size} (shape {shape:?})"
                    ),
                });
            }
            if let Dim::Symbol(symbol) = dim {
                match bindings.get(symbol) {
                    Some(&bound) if bound != size => {
                        return Err(OnnxError::InputShape {
                            input: input.name.clone(),
                            message: format!(
                                "dimension `{symbol}` is {size} here but {bound} elsewhere"
                            ),
                        });
                    }
                    _ => {
                        bindings.insert(symbol.clone(), size);
                    }
                }
            }
        }
    }
    for (name, shape) in &options.input_shapes {
        if !inputs.iter().any(|i| &i.name == name) {
            return Err(OnnxError::InputShape {
                input: name.clone(),
                message: format!("no graph input has this name (shape {shape:?} given)"),
            });
        }
    }
    Ok(bindings)
}

/// The sizes a decode step against `context` cache positions gives the `optimum` inputs
/// ([`ImportOptions::decode_context`]); `None` leaves an axis to the model.
fn decode_step_shape(name: &str, context: usize) -> Option<Vec<Option<usize>>> {
    match name {
        "input_ids" | "position_ids" => Some(vec![Some(1), Some(1)]),
        "attention_mask" => Some(vec![Some(1), Some(context)]),
        _ if name.starts_with("past_key_values.") => {
            Some(vec![Some(1), None, Some(context - 1), None])
        }
        _ => None,
    }
}

/// Binds the symbolic dimensions of a decoder-with-past export as one decode step
/// ([`ImportOptions::decode_context`]), checking fixed dimensions and earlier bindings agree.
fn bind_decode_step(
    inputs: &[&ValueInfoProto],
    context: usize,
    bindings: &mut HashMap<String, usize>,
) -> Result<(), OnnxError> {
    let decoder_error = |message: String| OnnxError::InputShape {
        input: "past_key_values.*".into(),
        message,
    };
    if context < 2 {
        return Err(decoder_error(format!(
            "a context of {context} tokens leaves no cache position; it must be at least 2"
        )));
    }
    if !inputs
        .iter()
        .any(|i| i.name.starts_with("past_key_values."))
    {
        return Err(decoder_error(
            "a generation plan needs a decoder-with-past export (inputs `input_ids`, \
             `position_ids`, `attention_mask`, `past_key_values.{i}.key`/`.value`)"
                .into(),
        ));
    }
    for input in inputs {
        let Some(wanted) = decode_step_shape(&input.name, context) else {
            continue;
        };
        let dims = declared_dims(input)?;
        let mismatch = |message: String| OnnxError::InputShape {
            input: input.name.clone(),
            message: format!("as a decode step with a context of {context} tokens: {message}"),
        };
        if dims.len() != wanted.len() {
            return Err(mismatch(format!(
                "the model declares rank {}, the decoder-with-past convention rank {}",
                dims.len(),
                wanted.len()
            )));
        }
        for (axis, (dim, want)) in dims.iter().zip(&wanted).enumerate() {
            let Some(want) = *want else { continue };
            match dim {
                Dim::Fixed(size) if *size != want => {
                    return Err(mismatch(format!("axis {axis} is {size}, not {want}")));
                }
                Dim::Fixed(_) => {}
                Dim::Symbol(symbol) => match bindings.insert(symbol.clone(), want) {
                    Some(bound) if bound != want => {
                        return Err(mismatch(format!(
                            "dimension `{symbol}` must be {want} but was bound to {bound}"
                        )));
                    }
                    _ => {}
                },
            }
        }
    }
    Ok(())
}

enum Dim {
    Fixed(usize),
    Symbol(String),
}

fn declared_dims(input: &ValueInfoProto) -> Result<Vec<Dim>, OnnxError> {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as DimValue;
    use onnx_protobuf::type_proto::Value as TypeValue;
    let err = |message: &str| OnnxError::InputShape {
        input: input.name.clone(),
        message: message.to_string(),
    };
    let Some(TypeValue::TensorType(tensor)) = input.type_.value.as_ref() else {
        return Err(err("not a tensor input"));
    };
    let Some(shape) = tensor.shape.as_ref() else {
        return Err(err("the model declares no shape for this input"));
    };
    shape
        .dim
        .iter()
        .enumerate()
        .map(|(i, d)| match &d.value {
            Some(DimValue::DimValue(v)) if *v >= 0 => Ok(Dim::Fixed(*v as usize)),
            Some(DimValue::DimParam(p)) if !p.is_empty() => Ok(Dim::Symbol(p.clone())),
            _ => Ok(Dim::Symbol(format!("{}_dim_{i}", input.name))),
        })
        .collect()
}

fn input_type(
    input: &ValueInfoProto,
    bindings: &HashMap<String, usize>,
) -> Result<(DType, Vec<usize>), OnnxError> {
    use onnx_protobuf::type_proto::Value as TypeValue;
    let Some(TypeValue::TensorType(tensor)) = input.type_.value.as_ref() else {
        return Err(OnnxError::InputShape {
            input: input.name.clone(),
            message: "not a tensor input".into(),
        });
    };
    let dtype = dtype_from_onnx(tensor.elem_type).ok_or_else(|| OnnxError::InputShape {
        input: input.name.clone(),
        message: format!("element type {} is not supported", tensor.elem_type),
    })?;
    let shape = declared_dims(input)?
        .into_iter()
        .map(|d| match d {
            Dim::Fixed(v) => Ok(v),
            Dim::Symbol(s) => bindings
                .get(&s)
                .copied()
                .ok_or(OnnxError::UnboundDimension {
                    input: input.name.clone(),
                    dim: s,
                }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((dtype, shape))
}

/// The state input an output updates, by the exporters' naming conventions:
/// `present.0.key` ↔ `past_key_values.0.key` (optimum, transformers) or `past.0.key`.
fn state_input_for(output: &str, inputs: &[String]) -> Option<String> {
    let rest = output
        .strip_prefix("present_key_values")
        .or_else(|| output.strip_prefix("present"))?;
    ["past_key_values", "past"]
        .iter()
        .map(|prefix| format!("{prefix}{rest}"))
        .find(|candidate| inputs.contains(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_pair_up() {
        let inputs = vec![
            "input_ids".to_string(),
            "past_key_values.1.value".to_string(),
        ];
        assert_eq!(
            state_input_for("present.1.value", &inputs).as_deref(),
            Some("past_key_values.1.value")
        );
        assert_eq!(state_input_for("logits", &inputs), None);
    }
}
