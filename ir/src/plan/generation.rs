//! Generation plans: a decode step whose KV-cache states carry over from one step to the next,
//! so a client and a server generate text by running the same plan once per token.
//!
//! A generation plan is compiled from a decoder-with-past export (the Hugging Face `optimum`
//! convention: inputs `input_ids`, `position_ids`, `attention_mask`, `past_key_values.{i}.key` /
//! `.value`; outputs `logits`, `present.{i}.key` / `.value`) bound as **one decode step against a
//! cache of `max_context − 1` slots**. Each step writes its key and value into slot `n` of the
//! cache by a masked add ([`crate::kv_window`]), so the state output feeds the next step
//! unchanged and the encrypted cache keeps one size, one layout and one level. The prompt is fed
//! token by token through the same step, so a context holds at most `max_context` tokens.
//!
//! The feeding protocol ([`Generation::step_inputs`]): at step `n` (0-based) the token's position
//! is `n`; the attention mask covers cache slots `0..n` and the current token (the mask's last
//! entry); the write mask selects slot `n`. States start as encryptions of zeros, which the mask
//! removes.

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
    /// The public attention mask, `i64 [1, max_context]`: cache slots then the current token.
    pub mask_input: String,
    /// The public one-hot of the cache slot each step writes, `f32 [1, 1, max_context − 1, 1]`
    /// ([`crate::kv_window::WRITE_MASK_INPUT`]).
    pub write_mask_input: String,
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
    /// `token`: the token ids, the position, the attention mask and the write mask, by input name.
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
        let slots = self.max_context - 1;
        let scalar = |value: i64| {
            Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[1, 1]), vec![value]).expect("1 value"))
        };
        let mask: Vec<i64> = (0..self.max_context)
            .map(|position| i64::from(position < step || position == slots))
            .collect();
        let mask = Tensor::I64(
            ArrayD::from_shape_vec(IxDyn(&[1, self.max_context]), mask)
                .expect("max_context values"),
        );
        // The last step of a full context writes nowhere: no step reads its entry.
        let write: Vec<f32> = (0..slots)
            .map(|slot| f32::from(u8::from(slot == step)))
            .collect();
        let write = Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&[1, 1, slots, 1]), write).expect("slots values"),
        );
        Ok(vec![
            (self.token_input.clone(), scalar(token)),
            (self.position_input.clone(), scalar(step as i64)),
            (self.mask_input.clone(), mask),
            (self.write_mask_input.clone(), write),
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
            write_mask_input: "cache_write_mask".into(),
            logits_output: "logits".into(),
        }
    }

    #[test]
    fn the_masks_follow_the_cache_slots() {
        let g = generation();
        let masks = [[0, 0, 0, 1], [1, 0, 0, 1], [1, 1, 0, 1], [1, 1, 1, 1]];
        let writes = [
            [1.0, 0.0, 0.0],
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0],
        ];
        for step in 0..4 {
            let inputs = g.step_inputs(step, 7).unwrap();
            assert_eq!(inputs[0].1.to_i64_vec(), vec![7]);
            assert_eq!(inputs[1].1.to_i64_vec(), vec![step as i64]);
            assert_eq!(inputs[2].1.shape(), &[1, 4]);
            assert_eq!(
                inputs[2].1.to_i64_vec(),
                masks[step].to_vec(),
                "step {step}"
            );
            assert_eq!(inputs[3].1.shape(), &[1, 1, 3, 1]);
            let write: Vec<f64> = inputs[3].1.to_f64().iter().copied().collect();
            assert_eq!(write, writes[step].to_vec(), "step {step}");
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
