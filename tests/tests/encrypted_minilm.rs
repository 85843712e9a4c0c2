//! Encrypted MiniLM-L6 sentence embeddings (issue 10, item 3), checked after the fact: the
//! decrypted outputs of `examples/bench_minilm.sh` (`OUT/CASE-PARAMS/out/*.npy`: the client
//! computed the embeddings, the six encoder layers ran encrypted) against the case's
//! onnxruntime reference. Asserts a sentence-embedding cosine ≥ [`COSINE_BOUND`] per case and
//! prints it with the goal of 0.999.
//!
//! Ignored: the encrypted run takes hours at N = 2^16 on two cores; the script runs this test on
//! its output folder (`CACHEMIR_MINILM_DIR`, `CACHEMIR_MINILM_PARAMS`, default `N16BootFull`).
//! CI runs MiniLM on `sim` with levels enforced (`tests/tests/levels_models.rs`).

use cachemir_compiler::reference::{Case, models_dir};
use cachemir_ir::npy::read_npy;
use cachemir_tests::sentence_embedding_cosine;
use std::collections::HashMap;
use std::path::PathBuf;

/// Issue 10's bound on the cosine with the fp32 reference (its goal is 0.999).
const COSINE_BOUND: f64 = 0.99;

#[test]
#[ignore = "reads the output of an encrypted N = 2^16 run: examples/bench_minilm.sh runs it"]
fn encrypted_minilm_matches_the_reference() {
    let Some(models) = models_dir() else { return };
    let out = PathBuf::from(
        std::env::var_os("CACHEMIR_MINILM_DIR")
            .expect("set CACHEMIR_MINILM_DIR to the output folder of examples/bench_minilm.sh"),
    );
    let params = std::env::var("CACHEMIR_MINILM_PARAMS").unwrap_or_else(|_| "N16BootFull".into());
    let mut checked = 0;
    for case_name in ["case0", "case1"] {
        let decrypted = out.join(format!("{case_name}-{params}")).join("out");
        let embedding = decrypted.join("sentence_embedding.npy");
        if !embedding.is_file() {
            eprintln!(
                "{case_name}: no decrypted output at {} — skipped",
                embedding.display()
            );
            continue;
        }
        let case = Case::load(
            &models
                .join("minilm_l6_dyn_ts17")
                .join(format!("{case_name}.json")),
        )
        .unwrap();
        let outputs: HashMap<String, Vec<f64>> = HashMap::from([(
            "sentence_embedding".to_string(),
            read_npy(&embedding)
                .unwrap()
                .to_f64()
                .iter()
                .copied()
                .collect(),
        )]);
        let cosine = sentence_embedding_cosine(&case, &outputs);
        println!(
            "MiniLM-L6 {case_name} ({params}): sentence-embedding cosine {cosine:.6} (bound \
             {COSINE_BOUND}, goal 0.999)"
        );
        assert!(cosine >= COSINE_BOUND, "{case_name}: cosine {cosine}");
        checked += 1;
    }
    assert!(
        checked > 0,
        "no decrypted MiniLM output under {}",
        out.display()
    );
}
