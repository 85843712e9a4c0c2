//! The tensor-level pipeline (recognize → decompose → calibrate → approximate) on the shared
//! models with their calibration sets: the approximated graphs, evaluated in f64, keep the
//! decoders' next tokens and stay within 0.05 of onnxruntime's logits, and MiniLM's sentence
//! embeddings keep a cosine ≥ 0.999. Decomposition alone is exact.

use cachemir_compiler::passes::approximate::{Approximate, table};
use cachemir_compiler::passes::decompose::Decompose;
use cachemir_compiler::passes::{Pipeline, Recognize, depth};
use cachemir_compiler::reference::{Case, compare, models_dir, run_case};
use cachemir_ir::npy::read_npy;
use cachemir_ir::{Graph, Precision};
use cachemir_onnx::{ImportOptions, import_file};
use cachemir_tests::approximated;

fn check_decoder(model: &str) -> Option<(Graph, Approximate)> {
    let dir = models_dir()?;
    let (_, graph, approximate) = approximated(&dir, model, 32);
    for index in 0..2 {
        let case = Case::load(&dir.join(model).join(format!("case{index}.json"))).unwrap();
        let outputs = run_case(&graph, &case, Precision::F64).unwrap();
        let (_, path) = case.expected.iter().find(|(n, _)| n == "logits").unwrap();
        let c = compare("logits", &outputs["logits"], &read_npy(path).unwrap(), None).unwrap();
        eprintln!(
            "{model} case{index}: logits max abs error {:.3e}, same next token {:?}",
            c.max_abs_error, c.same_argmax
        );
        assert_eq!(
            c.same_argmax.0, c.same_argmax.1,
            "{model} case{index}: the next token changed"
        );
        assert!(
            c.max_abs_error <= 0.05,
            "{model} case{index}: {:.3e}",
            c.max_abs_error
        );
    }
    for (layer, d) in depth::depth_by_layer(&graph) {
        eprintln!("{model}: layer {layer} reaches depth {d}");
    }
    Some((graph, approximate))
}

#[test]
fn tiny_llama_keeps_its_tokens() {
    let Some((_, approximate)) = check_decoder("tiny_llama_decode_step_p15_ts17") else {
        return;
    };
    let functions: Vec<&str> = approximate
        .sites
        .iter()
        .map(|s| s.function.as_str())
        .collect();
    assert_eq!(
        functions.iter().filter(|f| **f == "Exp").count(),
        2,
        "one exponential per softmax"
    );
    assert_eq!(functions.iter().filter(|f| **f == "Silu").count(), 2);
    assert_eq!(
        functions.iter().filter(|f| **f == "InverseSqrt").count(),
        5,
        "one per RMSNorm"
    );
    insta::assert_snapshot!(table(&approximate.sites));
}

#[test]
fn tiny_gpt2_keeps_its_tokens() {
    check_decoder("tiny_gpt2_decode_step_p15_ts17");
}

#[test]
fn minilm_sentence_embeddings_keep_their_direction() {
    let Some(dir) = models_dir() else { return };
    let model = "minilm_l6_dyn_ts17";
    // Eight calibration samples keep the debug-build test short; the CLI uses all 32.
    let (_, graph, _) = approximated(&dir, model, 8);
    let case = Case::load(&dir.join(model).join("case0.json")).unwrap();
    let outputs = run_case(&graph, &case, Precision::F64).unwrap();
    let (_, path) = case
        .expected
        .iter()
        .find(|(n, _)| n == "sentence_embedding")
        .unwrap();
    let (a, r) = (
        outputs["sentence_embedding"].to_f64(),
        read_npy(path).unwrap().to_f64(),
    );
    let dot: f64 = a.iter().zip(r.iter()).map(|(x, y)| x * y).sum();
    let cosine = dot
        / (a.iter().map(|x| x * x).sum::<f64>().sqrt()
            * r.iter().map(|x| x * x).sum::<f64>().sqrt());
    eprintln!("MiniLM case0: sentence-embedding cosine {cosine:.6}");
    assert!(cosine >= 0.999, "cosine {cosine}");
}

#[test]
fn decomposition_alone_is_exact() {
    let Some(dir) = models_dir() else { return };
    for model in [
        "tiny_llama_decode_step_p15_ts17",
        "tiny_gpt2_decode_step_p15_ts17",
    ] {
        let original = import_file(
            &dir.join(format!("{model}.onnx")),
            &ImportOptions::default(),
        )
        .unwrap()
        .graph;
        let mut graph = original.clone();
        let mut pipeline = Pipeline::new().with(Recognize).with(Decompose::default());
        pipeline.run(&mut graph, None, &[], &mut |_, _| {}).unwrap();
        assert!(
            !graph.op_histogram().contains_key("Softmax"),
            "{model}: softmax left"
        );
        let case = Case::load(&dir.join(model).join("case0.json")).unwrap();
        let (before, after) = (
            run_case(&original, &case, Precision::F64).unwrap(),
            run_case(&graph, &case, Precision::F64).unwrap(),
        );
        for (name, tensor) in &before {
            let c = compare(name, &after[name], tensor, None).unwrap();
            assert!(
                c.max_abs_error < 1e-5,
                "{model} {name}: {:.3e}",
                c.max_abs_error
            );
        }
    }
}
