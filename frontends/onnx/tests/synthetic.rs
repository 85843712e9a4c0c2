//! Import of small ONNX models built in code: folding of exporter-style shape arithmetic, the
//! printed IR, evaluation, and typed errors for every kind of malformed input.

use cachemir_ir::interp::Interpreter;
use cachemir_ir::printer::print_graph;
use cachemir_ir::{Precision, Tensor};
use cachemir_onnx::{ImportOptions, OnnxError, import_bytes};
use ndarray::{ArrayD, IxDyn};
use onnx_protobuf::tensor_shape_proto::{Dimension, dimension};
use onnx_protobuf::{
    AttributeProto, GraphProto, Message, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType, type_proto,
};
use std::collections::HashMap;

const FLOAT: i32 = 1;
const INT64: i32 = 7;

enum D {
    Fixed(i64),
    Sym(&'static str),
}

fn value_info(name: &str, elem_type: i32, dims: &[D]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| {
            let mut dimension = Dimension::new();
            dimension.value = Some(match d {
                D::Fixed(v) => dimension::Value::DimValue(*v),
                D::Sym(s) => dimension::Value::DimParam(s.to_string()),
            });
            dimension
        })
        .collect();
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = elem_type;
    tensor.shape = Some(TensorShapeProto {
        dim,
        ..Default::default()
    })
    .into();
    let mut ty = TypeProto::new();
    ty.value = Some(type_proto::Value::TensorType(tensor));
    ValueInfoProto {
        name: name.into(),
        type_: Some(ty).into(),
        ..Default::default()
    }
}

fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: FLOAT,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

fn int_tensor(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: vec![values.len() as i64],
        data_type: INT64,
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn int_attribute(name: &str, value: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        type_: AttributeType::INT.into(),
        i: value,
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attributes: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attributes,
        ..Default::default()
    }
}

fn model(nodes: Vec<NodeProto>, initializers: Vec<TensorProto>, opset: i64) -> ModelProto {
    let graph = GraphProto {
        name: "tiny".into(),
        node: nodes,
        initializer: initializers,
        input: vec![value_info("x", FLOAT, &[D::Sym("batch"), D::Fixed(4)])],
        output: vec![value_info(
            "y",
            FLOAT,
            &[D::Sym("batch"), D::Fixed(2), D::Fixed(2)],
        )],
        ..Default::default()
    };
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opset,
            ..Default::default()
        }],
        producer_name: "cachemir-tests".into(),
        graph: Some(graph).into(),
        ..Default::default()
    }
}

/// `y = Reshape(Softmax(x @ w + b), [Shape(x)[0], 2, 2])`: a linear layer, a softmax, and the
/// Shape → Gather → Unsqueeze → Concat chain exporters emit for a dynamic reshape.
fn tiny_model() -> ModelProto {
    let w: Vec<f32> = (0..16).map(|i| (i as f32 - 8.0) / 8.0).collect();
    model(
        vec![
            node("MatMul", "linear/MatMul", &["x", "w"], &["xw"], vec![]),
            node("Add", "linear/Add", &["xw", "b"], &["z"], vec![]),
            node(
                "Softmax",
                "softmax",
                &["z"],
                &["p"],
                vec![int_attribute("axis", -1)],
            ),
            node("Shape", "shape", &["x"], &["x_shape"], vec![]),
            node(
                "Gather",
                "batch_dim",
                &["x_shape", "zero"],
                &["batch"],
                vec![int_attribute("axis", 0)],
            ),
            node(
                "Unsqueeze",
                "unsqueeze",
                &["batch", "zero_axes"],
                &["batch_1d"],
                vec![],
            ),
            node(
                "Concat",
                "target",
                &["batch_1d", "two_two"],
                &["target_shape"],
                vec![int_attribute("axis", 0)],
            ),
            node("Reshape", "reshape", &["p", "target_shape"], &["y"], vec![]),
        ],
        vec![
            float_tensor("w", &[4, 4], &w),
            float_tensor("b", &[4], &[0.5, -0.5, 0.25, 0.0]),
            TensorProto {
                name: "zero".into(),
                dims: vec![],
                data_type: INT64,
                int64_data: vec![0],
                ..Default::default()
            },
            int_tensor("zero_axes", &[0]),
            int_tensor("two_two", &[2, 2]),
        ],
        17,
    )
}

fn bytes(model: &ModelProto) -> Vec<u8> {
    model.write_to_bytes().expect("serialize")
}

fn options_with_batch(batch: usize) -> ImportOptions {
    let mut options = ImportOptions::default();
    options.dims.insert("batch".into(), batch);
    options
}

#[test]
fn shape_arithmetic_folds_and_ir_is_stable() {
    let imported = import_bytes(&bytes(&tiny_model()), &options_with_batch(3)).unwrap();
    let histogram = imported.graph.op_histogram();
    for folded in ["Shape", "Gather", "Unsqueeze", "Concat"] {
        assert!(
            !histogram.contains_key(folded),
            "{folded} left after folding"
        );
    }
    assert_eq!(imported.summary.folded_nodes, 4);
    insta::assert_snapshot!(print_graph(&imported.graph));
}

#[test]
fn evaluation_matches_a_hand_computation() {
    let imported = import_bytes(&bytes(&tiny_model()), &options_with_batch(1)).unwrap();
    let x = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[1, 4]), vec![1.0, 0.0, -1.0, 2.0]).unwrap());
    let inputs = HashMap::from([("x".to_string(), x)]);
    let out = Interpreter::new(&imported.graph, Precision::F64)
        .run(&inputs)
        .unwrap();
    let y = out["y"].to_f64();
    assert_eq!(y.shape(), &[1, 2, 2]);
    // z_j = Σ_i x_i w_ij + b_j with w_ij = (4i + j - 8)/8.
    let x = [1.0, 0.0, -1.0, 2.0];
    let b = [0.5, -0.5, 0.25, 0.0];
    let z: Vec<f64> = (0..4)
        .map(|j| {
            (0..4)
                .map(|i| x[i] * ((4 * i + j) as f64 - 8.0) / 8.0)
                .sum::<f64>()
                + b[j]
        })
        .collect();
    let sum: f64 = z.iter().map(|v| v.exp()).sum();
    for (j, value) in y.iter().enumerate() {
        assert!(
            (value - z[j].exp() / sum).abs() < 1e-6,
            "element {j}: {value}"
        );
    }
}

#[test]
fn truncated_file_is_a_typed_error() {
    let full = bytes(&tiny_model());
    let mut decode_errors = 0;
    for cut in [1, 7, full.len() / 3, full.len() / 2, full.len() - 1] {
        match import_bytes(&full[..cut], &options_with_batch(1)) {
            Err(OnnxError::Decode(_)) => decode_errors += 1,
            // A cut between two fields leaves a well-formed but incomplete model.
            Err(_) => {}
            Ok(_) => panic!("a model cut at {cut} of {} bytes imported", full.len()),
        }
    }
    assert!(decode_errors >= 3, "{decode_errors} decode errors");
}

/// A small deterministic generator (xorshift), so the fuzz cases are reproducible.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_bytes_are_rejected_without_panicking() {
    let mut state = 0x9e37_79b9_7f4a_7c15;
    for length in [0usize, 1, 16, 300, 4096] {
        let noise: Vec<u8> = (0..length).map(|_| xorshift(&mut state) as u8).collect();
        assert!(
            import_bytes(&noise, &ImportOptions::default()).is_err(),
            "length {length}"
        );
    }
}

#[test]
fn mutated_models_never_panic() {
    let original = bytes(&tiny_model());
    let mut state = 42;
    for _ in 0..400 {
        let mut mutated = original.clone();
        for _ in 0..1 + xorshift(&mut state) % 4 {
            let at = (xorshift(&mut state) as usize) % mutated.len();
            mutated[at] = xorshift(&mut state) as u8;
        }
        if let Ok(imported) = import_bytes(&mutated, &options_with_batch(1)) {
            let inputs: HashMap<String, Tensor> = imported
                .graph
                .inputs()
                .iter()
                .map(|i| {
                    let ty = imported.graph.input_type(i);
                    (
                        imported.graph.input_name(i).to_string(),
                        Tensor::F32(ArrayD::zeros(IxDyn(&ty.shape))),
                    )
                })
                .collect();
            let _ = Interpreter::new(&imported.graph, Precision::F32).run(&inputs);
        }
    }
}

#[test]
fn unknown_op_names_node_op_and_opset() {
    let mut m = tiny_model();
    m.graph.as_mut().unwrap().node[2].op_type = "FancySoftmax".into();
    let error = import_bytes(&bytes(&m), &options_with_batch(1)).unwrap_err();
    assert!(
        matches!(&error, OnnxError::UnsupportedOp { node, op_type, opset, .. }
            if node == "softmax" && op_type == "FancySoftmax" && *opset == 17),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        "node `softmax`: op `FancySoftmax` (domain `ai.onnx`, opset 17) is not supported"
    );
}

#[test]
fn missing_initializer_names_the_tensor_and_node() {
    let mut m = tiny_model();
    m.graph.as_mut().unwrap().initializer.remove(0);
    let error = import_bytes(&bytes(&m), &options_with_batch(1)).unwrap_err();
    assert!(
        matches!(&error, OnnxError::UnknownTensor { node, name, .. } if node == "linear/MatMul" && name == "w"),
        "{error}"
    );
}

#[test]
fn wrong_input_rank_is_reported() {
    let mut options = ImportOptions::default();
    options.input_shapes.insert("x".into(), vec![1, 4, 1]);
    let error = import_bytes(&bytes(&tiny_model()), &options).unwrap_err();
    assert!(
        matches!(&error, OnnxError::InputShape { input, .. } if input == "x"),
        "{error}"
    );
    assert!(error.to_string().contains("rank 2"), "{error}");
}

#[test]
fn wrong_fixed_dimension_is_reported() {
    let mut options = ImportOptions::default();
    options.input_shapes.insert("x".into(), vec![1, 5]);
    let error = import_bytes(&bytes(&tiny_model()), &options).unwrap_err();
    assert!(
        matches!(&error, OnnxError::InputShape { input, .. } if input == "x"),
        "{error}"
    );
    assert!(
        error.to_string().contains("axis 1 is 4 in the model"),
        "{error}"
    );
}

#[test]
fn unbound_symbolic_dimension_says_which_flag_to_pass() {
    let error = import_bytes(&bytes(&tiny_model()), &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(&error, OnnxError::UnboundDimension { dim, .. } if dim == "batch"),
        "{error}"
    );
    assert!(error.to_string().contains("--dim batch=N"));
}

#[test]
fn unsupported_opset_is_rejected() {
    let mut m = tiny_model();
    m.opset_import[0].version = 9;
    let error = import_bytes(&bytes(&m), &options_with_batch(1)).unwrap_err();
    assert!(matches!(
        error,
        OnnxError::UnsupportedOpset { version: 9, .. }
    ));
}

#[test]
fn data_dependent_reshape_is_reported() {
    let mut m = tiny_model();
    // The target shape now comes from the data itself, which a static plan cannot take.
    m.graph.as_mut().unwrap().node[7].input[1] = "x".into();
    let error = import_bytes(&bytes(&m), &options_with_batch(1)).unwrap_err();
    assert!(
        error.to_string().contains("depends on run-time data"),
        "{error}"
    );
}

#[test]
fn initializer_with_wrong_data_length_is_reported() {
    let mut m = tiny_model();
    m.graph.as_mut().unwrap().initializer[1].float_data.pop();
    let error = import_bytes(&bytes(&m), &options_with_batch(1)).unwrap_err();
    assert!(
        matches!(&error, OnnxError::Initializer { name, .. } if name == "b"),
        "{error}"
    );
}

#[test]
fn expand_and_tile_of_run_time_values_become_copies() {
    // y = Tile(Expand(x, [2, 1, 4]), [1, 1, 2]): [1,4] → [2,1,4] → [2,1,8].
    let m = model(
        vec![
            node("Expand", "expand", &["x", "target"], &["wide"], vec![]),
            node("Tile", "tile", &["wide", "repeats"], &["y"], vec![]),
        ],
        vec![
            int_tensor("target", &[2, 1, 4]),
            int_tensor("repeats", &[1, 1, 2]),
        ],
        17,
    );
    let imported = import_bytes(&bytes(&m), &options_with_batch(1)).unwrap();
    let histogram = imported.graph.op_histogram();
    assert!(!histogram.contains_key("Expand") && !histogram.contains_key("Tile"));
    assert_eq!(histogram["Concat"], 2);
    let x = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[1, 4]), vec![1.0, 2.0, 3.0, 4.0]).unwrap());
    let out = Interpreter::new(&imported.graph, Precision::F64)
        .run(&HashMap::from([("x".to_string(), x)]))
        .unwrap();
    assert_eq!(out["y"].shape(), &[2, 1, 8]);
    let expected: Vec<f64> = [1.0, 2.0, 3.0, 4.0].repeat(4);
    assert_eq!(
        out["y"].to_f64().iter().copied().collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn mask_building_ops_on_constants_fold() {
    // A causal mask the dynamo exporter's way: Trilu of a constant, then Where into the scores.
    let m = model(
        vec![
            node(
                "Trilu",
                "triu",
                &["ones"],
                &["upper"],
                vec![int_attribute("upper", 1)],
            ),
            node(
                "Cast",
                "to_bool",
                &["upper"],
                &["blocked"],
                vec![int_attribute("to", 9)],
            ),
            node(
                "Where",
                "mask",
                &["blocked", "minus_inf", "x"],
                &["y"],
                vec![],
            ),
        ],
        vec![
            float_tensor("ones", &[4, 4], &[1.0; 16]),
            float_tensor("minus_inf", &[], &[f32::MIN]),
        ],
        17,
    );
    let imported = import_bytes(&bytes(&m), &options_with_batch(4)).unwrap();
    let histogram = imported.graph.op_histogram();
    assert!(!histogram.contains_key("Trilu") && !histogram.contains_key("Cast"));
    assert_eq!(imported.summary.folded_nodes, 2);
}

#[test]
fn per_tensor_dequantization_of_a_vector_folds() {
    // A QDQ-style bias: 1-D int8 data with one scale; the default axis 1 must not matter.
    let m = model(
        vec![
            node(
                "DequantizeLinear",
                "dequantize",
                &["q", "scale"],
                &["bias"],
                vec![],
            ),
            node("Add", "add", &["x", "bias"], &["y"], vec![]),
        ],
        vec![
            TensorProto {
                name: "q".into(),
                dims: vec![4],
                data_type: 3, // INT8
                raw_data: vec![2, 254, 0, 10],
                ..Default::default()
            },
            float_tensor("scale", &[], &[0.5]),
        ],
        17,
    );
    let imported = import_bytes(&bytes(&m), &options_with_batch(1)).unwrap();
    let bias = imported
        .graph
        .find_value("bias")
        .expect("the folded bias is a constant");
    let values = imported.graph.constant(bias).unwrap().to_f64();
    assert_eq!(
        values.iter().copied().collect::<Vec<_>>(),
        vec![1.0, -1.0, 0.0, 5.0]
    );
}

#[test]
fn an_unused_middle_output_keeps_the_others_in_place() {
    let m = model(
        vec![
            node(
                "Split",
                "split",
                &["x", "sizes"],
                &["a", "", "c"],
                vec![int_attribute("axis", 1)],
            ),
            node(
                "Concat",
                "join",
                &["a", "c"],
                &["y"],
                vec![int_attribute("axis", 1)],
            ),
        ],
        vec![int_tensor("sizes", &[1, 2, 1])],
        17,
    );
    let imported = import_bytes(&bytes(&m), &options_with_batch(1)).unwrap();
    let c = imported.graph.find_value("c").unwrap();
    assert_eq!(c.output, 2, "`c` is the split's third output");
    let x = Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[1, 4]), vec![1.0, 2.0, 3.0, 4.0]).unwrap());
    let out = Interpreter::new(&imported.graph, Precision::F64)
        .run(&HashMap::from([("x".to_string(), x)]))
        .unwrap();
    assert_eq!(
        out["y"].to_f64().iter().copied().collect::<Vec<_>>(),
        vec![1.0, 4.0]
    );
}
