//! The plan decoder's fuzz body, shared by the `plan_decode` fuzz target (`fuzz/`) and the
//! deterministic mutation test (`ir/tests/plan_decode.rs`) so that both exercise the same path:
//! bytes → [`Plan::from_bytes_within`] (decoding and [`Plan::validate`]) → [`levels::trace`].

use super::{Plan, levels};

/// The layout budget of a fuzzed decoding (slot-map entries; 16 MiB of maps): small, so that
/// inputs claiming huge layouts exercise the budget instead of making every run allocate
/// [`super::PLAN_LAYOUT_BUDGET`].
pub const FUZZ_LAYOUT_BUDGET: usize = 1 << 22;

/// What the decoder made of some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Rejected with a [`super::PlanError`].
    Rejected,
    /// Decoded and valid, but breaks a level rule ([`levels::LevelError`]).
    LevelError,
    /// Decoded, valid and (if leveled) consistent in levels.
    Accepted,
}

/// Runs untrusted `bytes` through the plan decoder, validator and level trace. Panics only on a
/// bug: a panic inside them, an accepted plan whose re-encoding does not decode, or an encoding
/// that is not a fixed point (decode ∘ encode must reproduce the same bytes).
pub fn decode_untrusted(bytes: &[u8]) -> Outcome {
    let Ok(plan) = Plan::from_bytes_within(bytes, FUZZ_LAYOUT_BUDGET) else {
        return Outcome::Rejected;
    };
    let level_error = levels::trace(&plan).is_err();
    let again = plan.to_bytes().expect("a decoded plan encodes");
    drop(plan);
    let back =
        Plan::from_bytes_within(&again, FUZZ_LAYOUT_BUDGET).expect("a re-encoded plan decodes");
    assert_eq!(
        back.to_bytes().expect("a decoded plan encodes"),
        again,
        "encoding is not a fixed point"
    );
    if level_error {
        Outcome::LevelError
    } else {
        Outcome::Accepted
    }
}
