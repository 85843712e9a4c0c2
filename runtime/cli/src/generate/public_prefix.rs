//! A public prefix (`--public-prefix N`, partial encryption after Park et al.): the first `N`
//! prompt tokens are public (a system prompt, a shared document), so the server runs their decode
//! steps in the clear and only the rest of the prompt and the generation are encrypted.
//!
//! The server runs the same generation plan on cleartext slot vectors (the `sim` backend, which
//! follows the plan instruction by instruction, levels included), which yields the KV cache of
//! the prefix as slot vectors in each state's layout. The client encrypts that cache at the
//! level the plan reads each state at, and the encrypted steps continue from step `N` exactly as
//! if they had computed it: the encrypted run differs from a fully encrypted one only by the CKKS
//! noise the first `N` steps would have added. Only the prefix's tokens become public; the
//! remaining prompt tokens, the generated tokens and every later KV-cache entry stay encrypted.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::{Result, anyhow};
use cachemir_ir::plan::{Plan, TensorRef};
use cachemir_vm::{Client, Generator, SimBackend};

use super::generation_error;
use crate::exit::input_error;

/// The KV cache of a public prefix, computed in the clear.
#[derive(Debug, Clone)]
pub struct PublicPrefix {
    /// Prompt tokens run in the clear (steps `0..tokens`).
    pub tokens: usize,
    /// `states[s][part]`: the slot vector (`plan.slots` reals) of part `part` of `plan.states[s]`
    /// after the prefix, in the state input's layout.
    pub states: Vec<Vec<Vec<f64>>>,
    /// Wall time of the cleartext steps, ms.
    pub clear_ms: f64,
}

impl PublicPrefix {
    /// Checks that `tokens` public tokens leave at least one private token in a prompt of
    /// `prompt_len` tokens: the step of the prompt's last token yields the first generated
    /// token, which must not be computed in the clear.
    ///
    /// # Errors
    /// An input error otherwise.
    pub fn check(tokens: usize, prompt_len: usize) -> Result<()> {
        if tokens >= prompt_len {
            return Err(input_error(anyhow!(
                "--public-prefix {tokens}: the prompt has {prompt_len} tokens; at most {} can \
                 run in the clear (the last prompt token's step yields the first generated \
                 token, which stays private)",
                prompt_len.saturating_sub(1)
            )));
        }
        Ok(())
    }

    /// Runs the decode steps of `prefix` (the first prompt tokens) on cleartext slot vectors
    /// with `weights` (the server's side).
    ///
    /// # Errors
    /// As [`Generator::step`] (a plan that does not run, a context too short).
    pub fn run_in_clear(
        plan: &Plan,
        weights: HashMap<TensorRef, Vec<f64>>,
        prefix: &[i64],
    ) -> Result<Self> {
        let start = Instant::now();
        let sim = SimBackend::for_plan(plan);
        let mut generator = Generator::new(&sim, plan, weights).map_err(generation_error)?;
        for &token in prefix {
            generator.step(token).map_err(generation_error)?;
        }
        let states = generator
            .states()
            .iter()
            .map(|parts| parts.iter().map(|ct| ct.values.clone()).collect())
            .collect();
        Ok(Self {
            tokens: prefix.len(),
            states,
            clear_ms: start.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// The client's encryption of the prefix's KV cache, each state at the level the plan reads
    /// it at (its state input's level), ready for [`Generator::resume`] at step
    /// [`PublicPrefix::tokens`].
    ///
    /// # Errors
    /// A state the plan does not declare as an input (an inconsistent plan; input error), or a
    /// backend failing to encrypt.
    pub fn encrypt<B: Client>(&self, backend: &B, plan: &Plan) -> Result<Vec<Vec<B::Ciphertext>>> {
        plan.states
            .iter()
            .zip(&self.states)
            .map(|(state, parts)| {
                let io = plan
                    .inputs
                    .iter()
                    .find(|io| io.name == state.input)
                    .ok_or_else(|| {
                        input_error(anyhow!(
                            "the plan's state `{}` is not an encrypted input",
                            state.input
                        ))
                    })?;
                parts
                    .iter()
                    .enumerate()
                    .map(|(part, values)| {
                        backend.encrypt_at(values, io.level).map_err(|e| {
                            anyhow!(
                                "encrypting the public prefix's KV cache `{}` part {part}: {e}",
                                state.input
                            )
                        })
                    })
                    .collect()
            })
            .collect()
    }

    /// The latency the prefix saved: its `tokens` steps at `encrypted_step_ms` (the measured
    /// mean of an encrypted step) minus the time they took in the clear, ms.
    pub fn saved_ms(&self, encrypted_step_ms: f64) -> f64 {
        self.tokens as f64 * encrypted_step_ms - self.clear_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_least_one_prompt_token_stays_private() {
        assert!(PublicPrefix::check(2, 3).is_ok());
        let e = PublicPrefix::check(3, 3).unwrap_err();
        assert!(e.downcast_ref::<crate::exit::InputError>().is_some());
        assert!(
            format!("{e:#}").contains("the prompt has 3 tokens; at most 2 can run in the clear"),
            "{e:#}"
        );
        let prefix = PublicPrefix {
            tokens: 2,
            states: Vec::new(),
            clear_ms: 30.0,
        };
        assert_eq!(prefix.saved_ms(1000.0), 1970.0);
    }
}
