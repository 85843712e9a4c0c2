//! Sliding KV-cache windows: turns a decode step that appends one position to its cache
//! (`present = concat(past, new)`, one position longer than `past`) into one whose state output is
//! the next step's `past` (`present` without its oldest position), so a generation loop feeds each
//! step's states to the next unchanged and the encrypted cache keeps one size and one layout.
//!
//! The oldest position is the one the attention mask has removed until the context is full (the
//! feeding protocol of [`crate::plan::generation`]), so dropping it changes no output.

use crate::error::IrError;
use crate::graph::{Graph, OutputRole, SourceLocation};
use crate::op::Op;

/// The axis along which decoder-with-past exports append positions: `[batch, kv_heads,
/// positions, head_dim]`.
pub const POSITION_AXIS: usize = 2;

/// Replaces every KV-cache state output `present` (shape `[…, P + 1, …]` against the state input's
/// `[…, P, …]` on [`POSITION_AXIS`]) by `present[:, :, 1:, :]`, named `<input>.next`. Returns the
/// number of states changed; outputs already the shape of their input are left alone.
///
/// # Errors
/// [`IrError::Malformed`] when a state output's shape is neither its input's nor one position
/// longer on [`POSITION_AXIS`] (naming both shapes).
pub fn slide_kv_cache(graph: &mut Graph) -> Result<usize, IrError> {
    let mut changed = 0;
    for index in 0..graph.outputs().len() {
        let output = &graph.outputs()[index];
        let OutputRole::State { input } = &output.role else {
            continue;
        };
        let input = input.clone();
        let output_name = output.name.clone();
        let value = output.value;
        let past = graph
            .inputs()
            .iter()
            .find(|i| graph.input_name(i) == input)
            .map(|i| graph.input_type(i).shape.clone())
            .ok_or_else(|| {
                IrError::Malformed(format!("state `{output_name}`: no input named `{input}`"))
            })?;
        let present = graph
            .value_type(value)
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
                 a sliding cache needs the output one position longer on axis {POSITION_AXIS}"
            )));
        }
        let name = format!("{input}.next");
        let slice = Op::Slice {
            starts: vec![1],
            ends: vec![i64::MAX],
            axes: vec![POSITION_AXIS as i64],
            steps: vec![1],
        };
        let next = graph.add_node(
            slice,
            &[value],
            vec![name.clone()],
            SourceLocation::Synthetic(format!("sliding window of {input}")),
        )?[0];
        graph.replace_state_output(index, name, next)?;
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;
    use crate::graph::InputRole;
    use crate::interp::{Interpreter, Precision};
    use crate::tensor::Tensor;
    use crate::{Secrecy, TensorType};
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

    #[test]
    fn the_next_state_drops_the_oldest_position() {
        let mut g = decode_step(3);
        assert_eq!(slide_kv_cache(&mut g).unwrap(), 1);
        assert_eq!(slide_kv_cache(&mut g).unwrap(), 0, "idempotent");
        let output = &g.outputs()[0];
        assert_eq!(output.name, "past.next");
        assert_eq!(
            g.inputs()[0].role,
            InputRole::State {
                output: "past.next".into()
            }
        );
        let tensor = |positions: usize, first: f32| {
            let values = (0..positions * 2).map(|i| first + i as f32).collect();
            Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[1, 1, positions, 2]), values).unwrap())
        };
        let inputs = HashMap::from([
            ("past".to_string(), tensor(3, 0.0)),
            ("new".to_string(), tensor(1, 6.0)),
        ]);
        let outputs = Interpreter::new(&g, Precision::F64).run(&inputs).unwrap();
        assert_eq!(
            outputs["past.next"]
                .to_f64()
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
        );
    }

    #[test]
    fn a_state_that_is_not_an_append_is_refused() {
        let mut g = decode_step(3);
        let past = g.inputs()[0].node;
        let doubled = g
            .add_node(
                Op::Concat { axis: 2 },
                &[crate::graph::ValueRef {
                    node: past,
                    output: 0,
                }; 2],
                vec!["doubled".into()],
                SourceLocation::Synthetic("concat".into()),
            )
            .unwrap()[0];
        g.replace_state_output(0, "doubled".into(), doubled)
            .unwrap();
        let error = slide_kv_cache(&mut g).unwrap_err().to_string();
        assert!(
            error.contains("[1, 1, 6, 2]") && error.contains("[1, 1, 3, 2]"),
            "{error}"
        );
    }
}
