//! Multiplicative depth of the encrypted part of a graph: how many rescaled multiplications
//! lie on the longest path from an encrypted input to each value (public values cost none:
//! they are computed in the clear).

use super::encrypted;
use crate::approx::evaluation_depth;
use cachemir_ir::{BinaryOp, Graph, Op, ReduceOp, ValueRef};
use std::collections::{BTreeMap, HashMap};

/// Levels consumed by each encrypted value, by node.
pub fn depths(graph: &Graph) -> HashMap<cachemir_ir::NodeIndex, u32> {
    let mut depth = HashMap::new();
    for node in graph.topological_order() {
        let operands = graph.operands(node);
        let deepest = operands
            .iter()
            .map(|v| depth.get(&v.node).copied().unwrap_or(0))
            .max()
            .unwrap_or(0);
        let any_encrypted = operands.iter().any(|v| encrypted(graph, *v));
        let own = if !encrypted(graph, ValueRef { node, output: 0 }) || !any_encrypted {
            0
        } else {
            match &graph.node(node).op {
                Op::Binary(BinaryOp::Mul | BinaryOp::Div)
                | Op::MatMul
                | Op::Gemm { .. }
                | Op::Rope => 1,
                Op::Reduce {
                    op: ReduceOp::Mean, ..
                } => 1,
                Op::Polynomial(p) => evaluation_depth(p.degree()),
                _ => 0,
            }
        };
        depth.insert(node, deepest + own);
    }
    depth
}

/// The depth reached by the end of each transformer layer, by layer index: the deepest value
/// whose source or name says `layers.N`, `layer.N` or `h.N` (the exporters' conventions).
pub fn depth_by_layer(graph: &Graph) -> BTreeMap<usize, u32> {
    let depth = depths(graph);
    let mut layers = BTreeMap::new();
    for (node, d) in depth {
        let n = graph.node(node);
        let layer = layer_of(&n.source.to_string())
            .or_else(|| n.output_names.first().and_then(|name| layer_of(name)));
        if let Some(layer) = layer {
            let entry = layers.entry(layer).or_insert(0);
            *entry = (*entry).max(d);
        }
    }
    layers
}

/// The layer number in a name such as `/model/layers.1/self_attn/MatMul`.
fn layer_of(text: &str) -> Option<usize> {
    for marker in ["layers.", "layer.", "h."] {
        for (at, _) in text.match_indices(marker) {
            let boundary = at == 0 || !text.as_bytes()[at - 1].is_ascii_alphanumeric();
            let digits: String = text[at + marker.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if boundary && !digits.is_empty() {
                return digits.parse().ok();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::layer_of;

    #[test]
    fn layer_numbers_from_exporter_names() {
        assert_eq!(layer_of("/model/model/layers.1/self_attn/MatMul"), Some(1));
        assert_eq!(layer_of("/bert/encoder/layer.5/output/Add"), Some(5));
        assert_eq!(layer_of("/model/transformer/h.0/attn/Gemm"), Some(0));
        assert_eq!(layer_of("/model/lm_head/MatMul"), None);
    }
}
