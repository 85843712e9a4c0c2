//! What `cachemir generate` keeps in a session besides the KV cache: the prompt, the tokens
//! generated so far and their latencies, committed as the metadata of every step.
//!
//! Step `n` (0-based) feeds the `n`-th token of the prompt followed by the generated tokens; the
//! logits of the steps from the prompt's last token on yield the generated tokens. A session at
//! step `k` therefore holds `max(0, k − (P − 1))` generated tokens for a prompt of `P` tokens,
//! the last of which (once there is one) is the next to feed: resuming needs nothing else.
//!
//! With a public prefix of `Q` prompt tokens (`--public-prefix Q`) the first `Q` steps run in the
//! clear and are never committed: session step `k` is then generation step `Q + k`.

use anyhow::{Result, anyhow};
use serde::{Deserialize, Serialize};

use crate::exit::input_error;

/// The generation so far (see the module documentation); its field names are the keys of
/// `../shared/models/*/generation.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    pub prompt_text: String,
    pub prompt_token_ids: Vec<i64>,
    pub generated_token_ids: Vec<i64>,
    /// Wall time of the step that produced each generated token, ms.
    pub per_token_ms: Vec<f64>,
    /// Prompt tokens run in the clear before the first encrypted step (0: none). Absent from
    /// transcripts committed before public prefixes existed.
    #[serde(default)]
    pub public_prefix: usize,
}

impl Transcript {
    /// A generation of `prompt` (its text and its token ids, at least one) with nothing
    /// generated yet.
    pub fn new(prompt_text: &str, prompt_token_ids: Vec<i64>) -> Self {
        Self {
            prompt_text: prompt_text.to_string(),
            prompt_token_ids,
            generated_token_ids: Vec::new(),
            per_token_ms: Vec::new(),
            public_prefix: 0,
        }
    }

    /// The transcript committed with step `step` of a session (generation step `step` plus the
    /// public prefix).
    ///
    /// # Errors
    /// An input error when the metadata is not a transcript, or not one of `step` steps.
    pub fn from_metadata(metadata: &serde_json::Value, step: u64) -> Result<Self> {
        let transcript: Self = serde_json::from_value(metadata.clone()).map_err(|e| {
            input_error(anyhow!(
                "the session's metadata is not a `cachemir generate` transcript ({e})"
            ))
        })?;
        let expected = usize::try_from(step)
            .unwrap_or(usize::MAX)
            .saturating_add(transcript.public_prefix)
            .saturating_sub(transcript.prompt_token_ids.len().saturating_sub(1));
        if transcript.prompt_token_ids.is_empty()
            || transcript.public_prefix >= transcript.prompt_token_ids.len()
            || transcript.generated_token_ids.len() != expected
            || transcript.per_token_ms.len() != expected
        {
            return Err(input_error(anyhow!(
                "the session's transcript ({} prompt tokens, {} of them public, {} generated, {} \
                 latencies) does not fit its step count {step}",
                transcript.prompt_token_ids.len(),
                transcript.public_prefix,
                transcript.generated_token_ids.len(),
                transcript.per_token_ms.len()
            )));
        }
        Ok(transcript)
    }

    /// The metadata to commit.
    pub fn to_metadata(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a transcript serializes")
    }

    /// The token fed at step `step`, if the transcript has it yet.
    pub fn fed_at(&self, step: usize) -> Option<i64> {
        let prompt = &self.prompt_token_ids;
        match step.checked_sub(prompt.len()) {
            None => prompt.get(step).copied(),
            Some(k) => self.generated_token_ids.get(k).copied(),
        }
    }

    /// Whether the logits of step `step` yield a generated token.
    pub fn yields_token(&self, step: usize) -> bool {
        step + 1 >= self.prompt_token_ids.len()
    }

    /// Records the next generated token and the wall time of its step.
    pub fn push(&mut self, token: i64, ms: f64) {
        self.generated_token_ids.push(token);
        self.per_token_ms.push(ms);
    }

    /// Tokens of the text: the prompt and the generated tokens.
    pub fn len(&self) -> usize {
        self.prompt_token_ids.len() + self.generated_token_ids.len()
    }

    /// Whether the text has no token (never, for a transcript made by [`Transcript::new`]).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_feed_the_prompt_then_the_generated_tokens() {
        let mut t = Transcript::new("a b c", vec![10, 11, 12]);
        assert_eq!(
            (0..4).map(|s| t.fed_at(s)).collect::<Vec<_>>(),
            [Some(10), Some(11), Some(12), None]
        );
        assert_eq!(
            (0..4).map(|s| t.yields_token(s)).collect::<Vec<_>>(),
            [false, false, true, true]
        );
        t.push(20, 1.5);
        assert_eq!(t.fed_at(3), Some(20));
        assert_eq!(t.len(), 4);

        // Three steps done (0, 1, 2): step 2 yielded the one generated token.
        let back = Transcript::from_metadata(&t.to_metadata(), 3).unwrap();
        assert_eq!(back, t);
        for bad_step in [2, 4] {
            let e = Transcript::from_metadata(&t.to_metadata(), bad_step).unwrap_err();
            assert!(
                format!("{e:#}").contains(&format!("does not fit its step count {bad_step}")),
                "{e:#}"
            );
        }
        // Before the prompt's last token, nothing is generated.
        let fresh = Transcript::new("a b c", vec![10, 11, 12]);
        assert!(Transcript::from_metadata(&fresh.to_metadata(), 2).is_ok());
        let e = Transcript::from_metadata(&serde_json::json!({"input": 1}), 1).unwrap_err();
        assert!(format!("{e:#}").contains("not a `cachemir generate` transcript"));
    }

    #[test]
    fn a_public_prefix_shifts_session_steps() {
        // Two of three prompt tokens in the clear: session step 1 is generation step 3, which
        // yielded the first generated token.
        let mut t = Transcript::new("a b c", vec![10, 11, 12]);
        t.public_prefix = 2;
        t.push(20, 1.5);
        assert_eq!(Transcript::from_metadata(&t.to_metadata(), 1).unwrap(), t);
        assert!(Transcript::from_metadata(&t.to_metadata(), 2).is_err());
        // A transcript committed before public prefixes existed has none.
        let mut old = t.to_metadata();
        old.as_object_mut().unwrap().remove("public_prefix");
        let back = Transcript::from_metadata(&old, 3).unwrap();
        assert_eq!(
            (back.public_prefix, back.generated_token_ids),
            (0, vec![20])
        );
        // The whole prompt public is not a transcript `generate` writes.
        t.public_prefix = 3;
        let e = Transcript::from_metadata(&t.to_metadata(), 0).unwrap_err();
        assert!(format!("{e:#}").contains("3 of them public"), "{e:#}");
    }
}
