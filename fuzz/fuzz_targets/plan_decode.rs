//! Arbitrary bytes → `Plan::from_bytes` (decoding and validation) → level trace, asserting no
//! panic; the body (`cachemir_ir::plan::fuzz::decode_untrusted`) is the one the deterministic
//! test `ir/tests/plan_decode.rs` runs in CI.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    cachemir_ir::plan::fuzz::decode_untrusted(bytes);
});
