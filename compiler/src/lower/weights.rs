//! The plan's weights file: every weight a plaintext reads, as raw f32 tensors (safetensors),
//! including the few the lowering derives (transposed Gemm weights, reciprocals of divisors).

use super::lowering::{Lowered, WeightSource};
use cachemir_ir::interp::{Value, synthetic_values};
use cachemir_ir::{Graph, Op, ValueRef};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Values (row-major, f64) of a weight of the graph.
fn graph_values(graph: &Graph, value: ValueRef) -> Vec<f64> {
    match &graph.node(value.node).op {
        Op::Constant(tensor) => tensor.to_f64().iter().copied().collect(),
        Op::SyntheticWeight { dtype, shape, seed } => {
            match synthetic_values(*dtype, shape, *seed) {
                Value::Float(a) => a.iter().copied().collect(),
                Value::Int(a) => a.iter().map(|&v| v as f64).collect(),
                Value::Bool(a) => a.iter().map(|&v| f64::from(u8::from(v))).collect(),
            }
        }
        _ => {
            // A weight the rewrites derived (e.g. RoPE's rotate-half folded into a projection):
            // evaluate its input-free subgraph.
            let name = graph.value_name(value).expect("named").to_string();
            let sub = graph
                .extract(&[], std::slice::from_ref(&name))
                .expect("a value of the graph");
            let outputs = cachemir_ir::Interpreter::new(&sub, cachemir_ir::Precision::F64)
                .run(&HashMap::new())
                .expect("input-free weights evaluate");
            outputs[&name].to_f64().iter().copied().collect()
        }
    }
}

/// Shape and values of every weight the plan reads.
pub fn weight_values(lowered: &Lowered, graph: &Graph) -> BTreeMap<String, (Vec<usize>, Vec<f64>)> {
    lowered
        .weights
        .iter()
        .map(|(name, source)| {
            let shape_of = |v: &ValueRef| graph.value_type(*v).expect("typed").shape.clone();
            let (shape, values) = match source {
                WeightSource::Value(v) => (shape_of(v), graph_values(graph, *v)),
                WeightSource::Scaled { value, scale } => (
                    shape_of(value),
                    graph_values(graph, *value)
                        .iter()
                        .map(|x| x * scale)
                        .collect(),
                ),
                WeightSource::Reciprocal(v) => (
                    shape_of(v),
                    graph_values(graph, *v).iter().map(|x| 1.0 / x).collect(),
                ),
                WeightSource::Transposed { value, scale } => {
                    let s = shape_of(value);
                    let values = graph_values(graph, *value);
                    let (rows, columns) = (s[0], s[1]);
                    let mut out = vec![0.0; values.len()];
                    for r in 0..rows {
                        for c in 0..columns {
                            out[c * rows + r] = scale * values[r * columns + c];
                        }
                    }
                    (vec![columns, rows], out)
                }
            };
            (name.clone(), (shape, values))
        })
        .collect()
}

/// Writes the weights as f32 safetensors.
///
/// # Errors
/// The file cannot be written.
pub fn write_weights(lowered: &Lowered, graph: &Graph, path: &Path) -> Result<(), String> {
    let values = weight_values(lowered, graph);
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = values
        .into_iter()
        .map(|(name, (shape, v))| {
            let data = v.iter().flat_map(|x| (*x as f32).to_le_bytes()).collect();
            (name, data, shape)
        })
        .collect();
    let views: HashMap<String, TensorView> = bytes
        .iter()
        .map(|(name, data, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|e| format!("weight `{name}`: {e}"))
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize_to_file(&views, None, path)
        .map_err(|e| format!("{}: {e}", path.display()))
}
