//! Text ↔ token ids with a Hugging Face `tokenizer.json` (the `tokenizers` crate), and the
//! streaming of generated text.

use std::path::Path;

use anyhow::{Result, anyhow};
use tokenizers::Tokenizer;

use crate::exit::input_error;

/// A tokenizer read from a `tokenizer.json`.
#[derive(Debug)]
pub struct Text {
    tokenizer: Tokenizer,
}

impl Text {
    /// Reads `path`.
    ///
    /// # Errors
    /// An input error for an unreadable file or one the crate cannot parse.
    pub fn load(path: &Path) -> Result<Self> {
        Tokenizer::from_file(path)
            .map(|tokenizer| Self { tokenizer })
            .map_err(|e| input_error(anyhow!("tokenizer {}: {e}", path.display())))
    }

    /// Token ids the tokenizer knows (added tokens included).
    pub fn vocabulary(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The ids of `text`, as the model saw text in training: no special tokens added.
    ///
    /// # Errors
    /// An input error when the tokenizer fails or the text has no token.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| input_error(anyhow!("tokenizing the prompt: {e}")))?;
        let ids: Vec<i64> = encoding.get_ids().iter().map(|&id| i64::from(id)).collect();
        if ids.is_empty() {
            return Err(input_error(anyhow!("the prompt has no token")));
        }
        Ok(ids)
    }

    /// The text of `ids` (special tokens kept, as they were generated).
    ///
    /// # Errors
    /// An id outside the vocabulary.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids = ids
            .iter()
            .map(|&id| u32::try_from(id).map_err(|_| anyhow!("token id {id}")))
            .collect::<Result<Vec<u32>>>()?;
        self.tokenizer
            .decode(&ids, false)
            .map_err(|e| anyhow!("decoding tokens {ids:?}: {e}"))
    }
}

/// The text generated so far, handed out piece by piece: byte-level tokens may split a UTF-8
/// character, so a piece is released only once the decoded text no longer ends in a partial
/// character (U+FFFD) or at the end.
#[derive(Debug, Default)]
pub struct Stream {
    printed: String,
}

impl Stream {
    /// The new text once `text` (the whole generated text so far) is decoded; empty while the
    /// last character is incomplete, unless `last`.
    pub fn piece(&mut self, text: &str, last: bool) -> String {
        if !last && text.ends_with('\u{FFFD}') {
            return String::new();
        }
        let common = self
            .printed
            .char_indices()
            .zip(text.char_indices())
            .find(|((_, a), (_, b))| a != b)
            .map_or(self.printed.len().min(text.len()), |((i, _), _)| i);
        // Text already printed cannot be taken back; a tokenizer that rewrites earlier text
        // (not byte-level BPE) shows the new ending only.
        let piece = text[common..].to_string();
        self.printed = text.to_string();
        piece
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_holds_back_partial_characters() {
        let mut s = Stream::default();
        assert_eq!(s.piece("Hi", false), "Hi");
        assert_eq!(s.piece("Hi \u{FFFD}", false), "");
        assert_eq!(s.piece("Hi é", false), " é");
        assert_eq!(s.piece("Hi é!", true), "!");
        assert_eq!(s.piece("Hi é!\u{FFFD}", true), "\u{FFFD}");
    }
}
