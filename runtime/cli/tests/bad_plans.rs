//! A corpus of bad plan files through the `cachemir` binary (issue 9's acceptance): truncated,
//! bit-flipped, of another format version and not a plan at all. Each is refused before any work
//! with a typed error naming the file, exit code 2, and no panic. The base is the fuzz target's
//! seed (`fuzz/corpus/plan_decode/seed-small.plan`: a small leveled ToyBootN12 plan using every
//! opcode); a bit flip that still decodes to a valid plan is not a bad plan and is skipped (the
//! library reports how many).

use cachemir_ir::plan::{PLAN_FORMAT_VERSION, Plan};
use std::process::Command;

const SEED: &[u8] = include_bytes!("../../../fuzz/corpus/plan_decode/seed-small.plan");
/// `CACHEMIR-PLAN`, then the format version (u32 little endian).
const VERSION_AT: usize = 13;

/// The corpus: (what, bytes), each of which `Plan::from_bytes` rejects.
fn corpus() -> Vec<(String, Vec<u8>)> {
    let mut bad = Vec::new();
    for length in [0, 5, VERSION_AT + 2, SEED.len() / 3, SEED.len() - 1] {
        bad.push((
            format!("truncated to {length} bytes"),
            SEED[..length].to_vec(),
        ));
    }
    let mut version = SEED.to_vec();
    version[VERSION_AT..VERSION_AT + 4].copy_from_slice(&(PLAN_FORMAT_VERSION + 1).to_le_bytes());
    bad.push(("a later format version".into(), version));
    bad.push(("not a plan".into(), b"{\"plan\": true}".to_vec()));
    // Bit flips at positions spread over the body (a fixed stride: deterministic).
    let mut position = VERSION_AT + 4;
    let mut valid_after_flip = 0;
    while position < SEED.len() && bad.len() < 40 {
        let mut flipped = SEED.to_vec();
        flipped[position] ^= 1 << (position % 8);
        if Plan::from_bytes(&flipped).is_err() {
            bad.push((
                format!("bit {} of byte {position} flipped", position % 8),
                flipped,
            ));
        } else {
            valid_after_flip += 1;
        }
        position += 7;
    }
    eprintln!(
        "{} bad plans; {valid_after_flip} bit flips left a valid plan",
        bad.len()
    );
    bad
}

#[test]
fn bad_plans_are_refused_with_exit_code_2() {
    assert!(Plan::from_bytes(SEED).is_ok(), "the seed plan decodes");
    let scratch = tempfile::tempdir().unwrap();
    let corpus = corpus();
    assert!(corpus.len() >= 20, "{} bad plans", corpus.len());
    for (index, (what, bytes)) in corpus.iter().enumerate() {
        let path = scratch.path().join(format!("bad{index}.plan"));
        std::fs::write(&path, bytes).unwrap();
        let keys = scratch.path().join(format!("keys{index}"));
        let out = Command::new(env!("CARGO_BIN_EXE_cachemir"))
            .args([
                "keygen",
                path.to_str().unwrap(),
                "-o",
                keys.to_str().unwrap(),
                "--insecure",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(
            stderr.contains(&format!("bad{index}.plan")),
            "{what}: the error names the file: {stderr}"
        );
        assert!(!keys.join("secret.key").exists(), "{what}: keys written");
    }
}
