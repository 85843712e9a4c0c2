//! Integration tests of the CKKS library at toy parameters: every operation against the same
//! computation on cleartext slots, with precision asserted in bits (−log2 max abs error).

mod arith;
mod common;
mod encoding;
mod errors;
mod rotation;
mod serialization;
mod threads;
