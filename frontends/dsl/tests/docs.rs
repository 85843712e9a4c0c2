//! The complete example in `docs/dsl.md` is a valid model.

use cachemir_dsl::{LoadOptions, load_source};
use std::path::Path;

#[test]
fn the_reference_example_builds() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/dsl.md"))
            .unwrap();
    let section = doc
        .split("## A complete example")
        .nth(1)
        .expect("the section exists");
    let example = section.split("```").nth(1).expect("a code block");
    // Shape-only: the example's weights file is not shipped.
    let example = example.replace("weights \"block.safetensors\";", "weights none;");
    let graph = load_source(&example, "dsl.md", Path::new("."), &LoadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let histogram = graph.op_histogram();
    assert_eq!(histogram["Attention"], 1);
    assert_eq!(graph.outputs().len(), 3);
}
