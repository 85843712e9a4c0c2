//! KV-cache writes for generation plans: turns a decode step that appends one position to its
//! cache (`present = concat(past, new)`, one position longer than `past`) into one whose state
//! output is the next step's `past` of the same size, written by a **masked add**:
//!
//! `next = past + new ⊙ write_mask`, with `new = present[:, :, P:P+1, :]` (the step's key or
//! value) and `write_mask` a public one-hot `[1, 1, P, 1]` selecting the cache slot of this step.
//!
//! Slot `n` holds the token of step `n`: the cache fills left to right and is never shifted, so
//! the stored ciphertexts are only ever added to — no rotation and no level are spent on the
//! cache, and its storage level can be the same at every step (Cachemir's append, §4). The
//! attention mask follows the slots: step `n` attends slots `0..n` and itself (see
//! [`crate::plan::generation`]). Attention is invariant under a permutation of the cache
//! positions applied to keys, values and mask alike (keys carry their rotary position from
//! `position_ids`), so the outputs are the model's.

use crate::dtype::{DType, Secrecy, TensorType};
use crate::error::IrError;
use crate::graph::{Graph, InputRole, OutputRole, SourceLocation, ValueRef};
use crate::op::{BinaryOp, Op};

/// The axis along which decoder-with-past exports append positions: `[batch, kv_heads,
/// positions, head_dim]`.
pub const POSITION_AXIS: usize = 2;

/// The public input added by [`write_kv_cache`].
pub const WRITE_MASK_INPUT: &str = "cache_write_mask";

/// Replaces every KV-cache state output `present` (shape `[…, P + 1, …]` against the state input's
/// `[…, P, …]` on [`POSITION_AXIS`]) by `past + present[:, :, P:P+1, :] ⊙ write_mask`, named
/// `<input>.next`, adding the public input [`WRITE_MASK_INPUT`] (`f32 [1, 1, P, 1]`) once.
/// Returns the number of states changed; outputs already the shape of their input are left
/// alone.
///
/// # Errors
/// [`IrError::Malformed`] when a state output's shape is neither its input's nor one position
/// longer on [`POSITION_AXIS`] (naming both shapes), or when the states disagree on `P`.
pub fn write_kv_cache(graph: &mut Graph) -> Result<usize, IrError> {
    let mut write_mask: Option<(ValueRef, usize)> = None;
    let mut changed = 0;
    for index in 0..graph.outputs().len() {
        let output = &graph.outputs()[index];
        let OutputRole::State { input } = &output.role else {
            continue;
        };
        let input = input.clone();
        let output_name = output.name.clone();
        let present_value = output.value;
        let (past_value, past) = graph
            .inputs()
            .iter()
            .find(|i| graph.input_name(i) == input)
            .map(|i| {
                (
                    ValueRef {
                        node: i.node,
                        output: 0,
                    },
                    graph.input_type(i).shape.clone(),
                )
            })
            .ok_or_else(|| {
                IrError::Malformed(format!("state `{output_name}`: no input named `{input}`"))
            })?;
        let present = graph
            .value_type(present_value)
            .map(|t| t.shape.clone())
            .ok_or_else(|| IrError::Malformed(format!("state `{output_name}`: no value")))?;
        if present == past {
            continue;
        }
        let appends_one = present.len() == past.len()
            && present.len() > POSITION_AXIS
            && present
                .iter()
                .zip(&past)
                .enumerate()
                .all(|(axis, (&p, &q))| p == q + usize::from(axis == POSITION_AXIS));
        if !appends_one {
            return Err(IrError::Malformed(format!(
                "state `{output_name}` has shape {present:?} and its input `{input}` {past:?}: \
                 a KV-cache write needs the output one position longer on axis {POSITION_AXIS}"
            )));
        }
        let positions = past[POSITION_AXIS];
        let mask = match write_mask {
            Some((mask, p)) if p == positions => mask,
            Some((_, p)) => {
                return Err(IrError::Malformed(format!(
                    "state `{output_name}` caches {positions} positions, another state {p}"
                )));
            }
            None => {
                let mut shape = vec![1; past.len()];
                shape[POSITION_AXIS] = positions;
                let mask = graph.add_input(
                    WRITE_MASK_INPUT,
                    TensorType::new(DType::F32, shape, Secrecy::Public),
                    InputRole::Input,
                    SourceLocation::Synthetic("KV-cache write mask".into()),
                );
                write_mask = Some((mask, positions));
                mask
            }
        };
        let source = || SourceLocation::Synthetic(format!("KV-cache write of {input}"));
        let new = graph.add_node(
            Op::Slice {
                starts: vec![positions as i64],
                ends: vec![positions as i64 + 1],
                axes: vec![POSITION_AXIS as i64],
                steps: vec![1],
            },
            &[present_value],
            vec![format!("{input}.new")],
            source(),
        )?[0];
        let placed = graph.add_node(
            Op::Binary(BinaryOp::Mul),
            &[new, mask],
            vec![format!("{input}.placed")],
            source(),
        )?[0];
        let name = format!("{input}.next");
        let next = graph.add_node(
            Op::Binary(BinaryOp::Add),
            &[past_value, placed],
            vec![name.clone()],
            source(),
        )?[0];
        graph.replace_state_output(index, name, next)?;
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interp::{Interpreter, Precision};
    use crate::tensor::Tensor;
    use ndarray::{ArrayD, IxDyn};
    use std::collections::HashMap;

    /// `present = concat(past, new)` on axis 2, the state pair of a decode step.
    fn decode_step(past_positions: usize) -> Graph {
        let mut g = Graph::new("step");
        let ty =
            |positions| TensorType::new(DType::F32, vec![1, 1, positions, 2], Secrecy::Encrypted);
        let source = || SourceLocation::Synthetic("test".into());
        let past = g.add_input(
            "past",
            ty(past_positions),
            InputRole::State {
                output: "present".into(),
            },
            source(),
        );
        let new = g.add_input("new", ty(1), InputRole::Input, source());
        let present = g
            .add_node(
                Op::Concat { axis: 2 },
                &[past, new],
                vec!["present".into()],
                SourceLocation::Synthetic("concat".into()),
            )
            .unwrap()[0];
        g.add_output(
            "present",
            present,
            OutputRole::State {
                input: "past".into(),
            },
        );
        g
    }

    fn tensor(shape: &[usize], values: Vec<f32>) -> Tensor {
        Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), values).unwrap())
    }

    #[test]
    fn the_new_entry_lands_in_the_masked_slot() {
        let mut g = decode_step(3);
        assert_eq!(write_kv_cache(&mut g).unwrap(), 1);
        assert_eq!(write_kv_cache(&mut g).unwrap(), 0, "idempotent");
        assert_eq!(g.outputs()[0].name, "past.next");
        assert_eq!(
            g.inputs()[0].role,
            InputRole::State {
                output: "past.next".into()
            }
        );
        let inputs = HashMap::from([
            (
                "past".to_string(),
                tensor(&[1, 1, 3, 2], vec![1.0, 2.0, 0.0, 0.0, 0.0, 0.0]),
            ),
            ("new".to_string(), tensor(&[1, 1, 1, 2], vec![7.0, 8.0])),
            (
                WRITE_MASK_INPUT.to_string(),
                tensor(&[1, 1, 3, 1], vec![0.0, 1.0, 0.0]),
            ),
        ]);
        let outputs = Interpreter::new(&g, Precision::F64).run(&inputs).unwrap();
        assert_eq!(
            outputs["past.next"]
                .to_f64()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![1.0, 2.0, 7.0, 8.0, 0.0, 0.0]
        );
    }

    #[test]
    fn a_state_that_is_not_an_append_is_refused() {
        let mut g = decode_step(3);
        let past = g.inputs()[0].node;
        let doubled = g
            .add_node(
                Op::Concat { axis: 2 },
                &[ValueRef {
                    node: past,
                    output: 0,
                }; 2],
                vec!["doubled".into()],
                SourceLocation::Synthetic("concat".into()),
            )
            .unwrap()[0];
        g.replace_state_output(0, "doubled".into(), doubled)
            .unwrap();
        let error = write_kv_cache(&mut g).unwrap_err().to_string();
        assert!(
            error.contains("[1, 1, 6, 2]") && error.contains("[1, 1, 3, 2]"),
            "{error}"
        );
    }
}
