//! Slot-level compilation of the shared models at 2^15 slots, executed on the `sim` backend and
//! compared with onnxruntime's outputs.

use cachemir_compiler::reference::{Case, models_dir};
use cachemir_ir::{Interpreter, Precision};
use cachemir_onnx::{ImportOptions, import_file};
use cachemir_tests::{
    approximated, check_decoder_outputs, check_sentence_embedding, cosine, embedding_output,
    lower_model, run_sim,
};

fn check_decoder(model: &str) {
    let Some(dir) = models_dir() else { return };
    let (_, graph, _) = approximated(&dir, model, 32);
    let lowered = lower_model(&graph, model);
    for index in 0..2 {
        let case = Case::load(&dir.join(model).join(format!("case{index}.json"))).unwrap();
        let outputs = run_sim(&lowered, &lowered.plan, &graph, &case);
        check_decoder_outputs(&format!("{model} case{index}"), &case, &outputs);
    }
}

#[test]
fn tiny_llama_decode_step_on_sim() {
    check_decoder("tiny_llama_decode_step_p15_ts17");
}

#[test]
fn tiny_gpt2_decode_step_on_sim() {
    check_decoder("tiny_gpt2_decode_step_p15_ts17");
}

#[test]
fn minilm_on_sim() {
    let Some(dir) = models_dir() else { return };
    let model = "minilm_l6_dyn_ts17";
    let (_, graph, _) = approximated(&dir, model, 8);
    let lowered = lower_model(&graph, model);
    // case0 is batch 1 × 16 tokens, the shape compiled; case1 (2 × 18) needs another plan.
    let case = Case::load(&dir.join(model).join("case0.json")).unwrap();
    let outputs = run_sim(&lowered, &lowered.plan, &graph, &case);
    check_sentence_embedding("MiniLM case0", &case, &outputs);
}

/// One encoder layer cut out of the approximated MiniLM (its input encrypted), against the same
/// layer of the imported model evaluated in f64 (which matches onnxruntime to ~1e-6).
#[test]
fn one_minilm_layer_on_sim() {
    let Some(dir) = models_dir() else { return };
    let model = "minilm_l6_dyn_ts17";
    let layer_input = embedding_output(model);
    let layer_output = "/bert/encoder/layer.0/output/LayerNorm/LayerNormalization_output_0";
    let (_, graph, _) = approximated(&dir, model, 8);
    let case = Case::load(&dir.join(model).join("case0.json")).unwrap();
    let options = ImportOptions {
        input_shapes: case.input_shapes(),
        ..Default::default()
    };
    let original = import_file(&dir.join(format!("{model}.onnx")), &options)
        .unwrap()
        .graph;
    // The layer's input and the next layer's first projection as produced by the exact model.
    let refs = [layer_input, layer_output].map(|n| original.find_value(n).unwrap());
    let values = Interpreter::new(&original, Precision::F64)
        .run_values(&case.inputs, &refs)
        .unwrap();
    let tensor = |v| {
        values[&v]
            .clone()
            .into_tensor(cachemir_ir::DType::F64)
            .unwrap()
    };
    let (input_tensor, output_tensor) = (tensor(refs[0]), tensor(refs[1]));
    // The decomposed norm's last value, under whatever name decomposition gave it: the operand
    // of the next layer's query projection.
    let next = graph
        .find_value("/bert/encoder/layer.1/attention/self/query/MatMul_output_0")
        .unwrap();
    let last = graph.operands(next.node)[0];
    let last_name = graph.value_name(last).unwrap().to_string();
    let layer = graph
        .extract(&[layer_input.to_string()], std::slice::from_ref(&last_name))
        .unwrap();
    let lowered = lower_model(&layer, "MiniLM layer 0");
    let mut inputs = case.inputs.clone();
    inputs.insert(layer_input.to_string(), input_tensor);
    let case = Case {
        inputs,
        expected: Vec::new(),
    };
    let outputs = run_sim(&lowered, &lowered.plan, &layer, &case);
    let expected: Vec<f64> = output_tensor.to_f64().iter().copied().collect();
    let got = &outputs[&last_name];
    let error = got
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let c = cosine(got, &expected);
    eprintln!("MiniLM layer 0: max abs error {error:.3e}, cosine {c:.6}");
    assert!(c >= 0.999, "cosine {c}");
}
