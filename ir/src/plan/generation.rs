//! Generation plans: a decode step whose KV-cache states carry over from one step to the next,
//! so a client and a server generate text by running the same plan once per token.
//!
//! A generation plan is compiled from a decoder-with-past export (the Hugging Face `optimum`
//! convention: inputs `input_ids`, `position_ids`, `attention_mask`, `past_key_values.{i}.key` /
//! `.value`; outputs `logits`, `present.{i}.key` / `.value`) bound as **one decode step against a
//! cache of `max_context − 1` positions**. Its states are *sliding windows*: each step's state
//! output is the step's `present` without its oldest position, in the state input's layout, so
//! that it feeds the next step unchanged and the cache never grows. The prompt is fed token by
//! token through the same step (a 1-token step costs the same as any decode step; see
//! [`Generation::step_inputs`]), so a context holds at most `max_context` tokens.
//!
//! The feeding protocol is the one of the shared `*_decode_step_*` models (see
//! `../shared/models/README.md`): at step `n` (0-based) the token's position is `n` and the
//! attention mask covers the last `n + 1` of the `max_context` cache positions; states start as
//! encryptions of zeros, which the mask removes.

use crate::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

/// What a runtime needs to run a [`Plan`](super::Plan) token by token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Tokens a context holds: the prompt and the generated tokens together (the cache holds
    /// `max_context − 1` past positions plus the current one).
    pub max_context: usize,
    /// The client input of token ids, `i64 [1, 1]` (the client program embeds it).
    pub token_input: String,
    /// The public input of positions, `i64 [1, 1]`.
    pub position_input: String,
    /// The public attention mask, `i64 [1, max_context]`.
    pub mask_input: String,
    /// The encrypted output of next-token logits, `[1, 1, vocabulary]`.
    pub logits_output: String,
}

/// A step that the plan cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenerationError {
    #[error(
        "step {step} is past the plan's context of {max_context} tokens (prompt and generated tokens together)"
    )]
    ContextFull { step: usize, max_context: usize },
}

impl Generation {
    /// The inputs of step `step` (0-based: the step's token sits at position `step`) feeding
    /// `token`: the token ids, the position and the mask, by input name.
    ///
    /// # Errors
    /// [`GenerationError::ContextFull`] when `step ≥ max_context`.
    pub fn step_inputs(
        &self,
        step: usize,
        token: i64,
    ) -> Result<Vec<(String, Tensor)>, GenerationError> {
        if step >= self.max_context {
            return Err(GenerationError::ContextFull {
                step,
                max_context: self.max_context,
            });
        }
        let scalar = |value: i64| {
            Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[1, 1]), vec![value]).expect("1 value"))
        };
        let mask: Vec<i64> = (0..self.max_context)
            .map(|position| i64::from(position + step + 1 >= self.max_context))
            .collect();
        let mask = Tensor::I64(
            ArrayD::from_shape_vec(IxDyn(&[1, self.max_context]), mask)
                .expect("max_context values"),
        );
        Ok(vec![
            (self.token_input.clone(), scalar(token)),
            (self.position_input.clone(), scalar(step as i64)),
            (self.mask_input.clone(), mask),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generation() -> Generation {
        Generation {
            max_context: 4,
            token_input: "input_ids".into(),
            position_input: "position_ids".into(),
            mask_input: "attention_mask".into(),
            logits_output: "logits".into(),
        }
    }

    #[test]
    fn the_mask_covers_the_last_step_plus_one_positions() {
        let g = generation();
        for (step, expected) in [[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 1]]
            .iter()
            .enumerate()
        {
            let inputs = g.step_inputs(step, 7).unwrap();
            assert_eq!(inputs[0].1.to_i64_vec(), vec![7]);
            assert_eq!(inputs[1].1.to_i64_vec(), vec![step as i64]);
            assert_eq!(inputs[2].1.shape(), &[1, 4]);
            assert_eq!(inputs[2].1.to_i64_vec(), expected.to_vec(), "step {step}");
        }
        assert_eq!(
            g.step_inputs(4, 7).unwrap_err(),
            GenerationError::ContextFull {
                step: 4,
                max_context: 4
            }
        );
    }
}
