//! ONNX → DSL → IR: every shared model, printed as Cachemir model text with its weights and
//! loaded back, evaluates like the ONNX import on every reference case.

use cachemir_compiler::reference::{Case, compare, models_dir, run_case};
use cachemir_dsl::print::print_model;
use cachemir_dsl::{LoadOptions, load_source, weights};
use cachemir_ir::Precision;
use cachemir_onnx::{ImportOptions, import_file};

#[test]
fn every_model_round_trips_through_the_dsl() {
    let Some(dir) = models_dir() else { return };
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for model in manifest["models"].as_array().unwrap() {
        let onnx = dir.join(model["onnx"].as_str().unwrap());
        for case_file in model["cases"].as_array().unwrap() {
            let case_path = dir
                .join(model["dir"].as_str().unwrap())
                .join(case_file.as_str().unwrap());
            let case = Case::load(&case_path).unwrap();
            let options = ImportOptions {
                input_shapes: case.input_shapes(),
                ..Default::default()
            };
            let imported = import_file(&onnx, &options).unwrap();
            // As `cachemirc import --emit dsl` does: composite ops recognised, then printed.
            let mut recognised = imported.graph.clone();
            cachemir_ir::recognize::recognize(&mut recognised);
            let printed = print_model(&recognised, "weights.safetensors");
            weights::save(
                &scratch.path().join("weights.safetensors"),
                &printed.weights,
            )
            .unwrap();
            let graph = load_source(
                &printed.text,
                "printed.cmr",
                scratch.path(),
                &LoadOptions::default(),
            )
            .unwrap_or_else(|e| {
                panic!(
                    "{}: the printed model does not load:\n{e}",
                    case_path.display()
                )
            });
            assert_eq!(
                graph.op_histogram(),
                recognised.op_histogram(),
                "{}",
                case_path.display()
            );

            let expected = run_case(&imported.graph, &case, Precision::F64).unwrap();
            let actual = run_case(&graph, &case, Precision::F64).unwrap();
            for (name, tensor) in &expected {
                let c = compare(name, &actual[name], tensor, None).unwrap();
                assert!(
                    c.max_abs_error <= 1e-5,
                    "{} {name}: {:.3e}",
                    case_path.display(),
                    c.max_abs_error
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 11, "only {checked} cases");
}
