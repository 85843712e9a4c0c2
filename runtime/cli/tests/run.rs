//! `cachemir run --backend sim` end to end on a tiny hand-built plan: a client program, a public
//! program, a weight from safetensors, a KV-cache state taken from the case, a range check that
//! fails, and the `.npy` files it writes; then the errors and their exit codes.

use cachemir_ir::layout::{Layout, Run};
use cachemir_ir::npy::{read_npy, write_npy};
use cachemir_ir::plan::{
    Ciphertexts, Dst, Instruction, Io, PLAN_FORMAT_VERSION, Part, Plain, Plaintext, Plan,
    RangeCheck, Site, Src, State, Step, TensorRef,
};
use cachemir_ir::{
    BinaryOp, DType, Graph, InputRole, Op, OutputRole, Secrecy, SourceLocation, Tensor, TensorType,
};
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, tensor::TensorView};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Output};

const SLOTS: usize = 8;

fn cachemir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cachemir"))
        .args(args)
        .output()
        .expect("run cachemir")
}

fn loc(name: &str) -> SourceLocation {
    SourceLocation::Onnx { node: name.into() }
}

fn f32s(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), values.to_vec()).unwrap())
}

/// `name_out = input · factor` over a `[4]` input, as plan-program JSON.
fn scaling_program(input: &str, output: &str, factor: f32, secrecy: Secrecy) -> String {
    let mut g = Graph::new(output);
    let x = g.add_input(
        input,
        TensorType::new(DType::F32, vec![4], secrecy),
        InputRole::Input,
        loc(input),
    );
    let c = g.add_constant("factor", f32s(&[], &[factor]), loc("factor"));
    let y = g
        .add_node(
            Op::Binary(BinaryOp::Mul),
            &[x, c],
            vec![output.into()],
            loc(output),
        )
        .unwrap()[0];
    g.add_output(output, y, OutputRole::Output);
    serde_json::to_string(&g).unwrap()
}

fn run(slot: u32, count: u32) -> Run {
    Run {
        ciphertext: 0,
        slot,
        count,
        element: 0,
        step: 1,
    }
}

/// The plan: `h` (client: `x · 2`) and the state `past` in; out `y = h · w + b` (`b`: public
/// program `pos · 0.5`), `z = h[1..4]` (a rotation), `cache.present = past + h`.
fn tiny_plan() -> Plan {
    use Instruction::*;
    let v4 = Layout::row_major(&[4], SLOTS);
    let io = |name: &str, layout: &Layout| Ciphertexts {
        name: name.into(),
        layout: layout.clone(),
        level: None,
    };
    let gather = |tensor: TensorRef| Plaintext::Gather {
        tensor,
        runs: vec![run(0, 4)],
        scale: 1.0,
    };
    let instructions = vec![
        Load {
            dst: Dst(0),
            input: Io(0),
            part: Part(0),
        },
        MultiplyPlain {
            dst: Dst(1),
            a: Src(0),
            plaintext: Plain(0),
        },
        AddPlain {
            dst: Dst(2),
            a: Src(1),
            plaintext: Plain(1),
        },
        Store {
            src: Src(2),
            output: Io(0),
            part: Part(0),
        },
        Rotate {
            dst: Dst(3),
            a: Src(0),
            step: Step(1),
        },
        Store {
            src: Src(3),
            output: Io(1),
            part: Part(0),
        },
        Load {
            dst: Dst(4),
            input: Io(1),
            part: Part(0),
        },
        Add {
            dst: Dst(5),
            a: Src(4),
            b: Src(0),
        },
        Store {
            src: Src(5),
            output: Io(2),
            part: Part(0),
        },
    ];
    let sites = [
        "h",
        "mlp.scale",
        "mlp.bias",
        "y",
        "z",
        "z",
        "past",
        "present",
        "present",
    ];
    Plan {
        version: PLAN_FORMAT_VERSION,
        name: "tiny".into(),
        slots: SLOTS,
        parameters: None,
        weights: "weights/tiny.safetensors".into(),
        weight_shapes: BTreeMap::from([("w".into(), vec![4])]),
        client_program: scaling_program("x", "h", 2.0, Secrecy::Encrypted),
        public_program: scaling_program("pos", "b", 0.5, Secrecy::Public),
        public_inputs: vec!["pos".into()],
        inputs: vec![io("h", &v4), io("past", &v4)],
        outputs: vec![
            io("y", &v4),
            io("z", &Layout::row_major(&[3], SLOTS)),
            io("cache.present", &v4),
        ],
        states: vec![State {
            input: "past".into(),
            output: "cache.present".into(),
        }],
        generation: None,
        plaintexts: vec![
            gather(TensorRef::Weight("w".into())),
            gather(TensorRef::Public("b".into())),
        ],
        rotations: vec![1],
        registers: 6,
        sites: sites
            .iter()
            .map(|s| Site {
                name: (*s).into(),
                source: "test".into(),
                layer: Some(0),
            })
            .collect(),
        instruction_sites: (0..instructions.len() as u32).collect(),
        instructions,
        checks: vec![
            RangeCheck {
                after: 1,
                register: 1,
                site: 1,
                low: 0.0,
                high: 10.0,
                occupied: vec![run(0, 4)],
            },
            RangeCheck {
                after: 2,
                register: 2,
                site: 2,
                low: 0.0,
                high: 20.0,
                occupied: vec![run(0, 4)],
            },
        ],
    }
}

fn write_weights(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            let data = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            ((*n).to_string(), s.clone(), data)
        })
        .collect();
    let views: HashMap<String, TensorView> = bytes
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(&views, None).unwrap()).unwrap();
}

/// Writes plan, weights and case into `dir`; returns (plan path, case path).
fn setup(dir: &Path, plan: &Plan) -> (String, String) {
    let plan_path = dir.join("tiny.plan");
    std::fs::write(&plan_path, plan.to_bytes().unwrap()).unwrap();
    write_weights(
        &dir.join("weights/tiny.safetensors"),
        &[("w", vec![4], vec![0.5, 1.0, 1.5, 2.0])],
    );
    let case = dir.join("case/case0.json");
    std::fs::create_dir_all(case.parent().unwrap()).unwrap();
    for (name, values) in [
        ("x", [1.0, 2.0, 3.0, 4.0]),
        ("pos", [0.0, 1.0, 2.0, 3.0]),
        ("past", [10.0, 20.0, 30.0, 40.0]),
    ] {
        let path = case.parent().unwrap().join(format!("{name}.npy"));
        write_npy(&path, &f32s(&[4], &values)).unwrap();
    }
    std::fs::write(
        &case,
        r#"{"inputs": [{"name": "x", "file": "x.npy"}, {"name": "pos", "file": "pos.npy"},
                       {"name": "past", "file": "past.npy"}]}"#,
    )
    .unwrap();
    (plan_path.display().to_string(), case.display().to_string())
}

fn values(path: &Path) -> (Vec<usize>, Vec<f32>) {
    match read_npy(path).unwrap() {
        Tensor::F32(a) => (a.shape().to_vec(), a.iter().copied().collect()),
        other => panic!("{}: {:?}, not f32", path.display(), other.dtype()),
    }
}

#[test]
fn run_sim_writes_the_outputs_and_reports_violations() {
    let dir = tempfile::tempdir().unwrap();
    let (plan, case) = setup(dir.path(), &tiny_plan());
    let out = dir.path().join("out");
    let output = cachemir(&[
        "run",
        &plan,
        "--backend",
        "sim",
        "--inputs",
        &case,
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // h = 2x = [2, 4, 6, 8]; w = [.5, 1, 1.5, 2]; b = pos / 2.
    assert_eq!(
        values(&out.join("y.npy")),
        (vec![4], vec![1.0, 4.5, 10.0, 17.5])
    );
    assert_eq!(values(&out.join("z.npy")), (vec![3], vec![4.0, 6.0, 8.0]));
    assert_eq!(
        values(&out.join("cache_present.npy")),
        (vec![4], vec![12.0, 24.0, 36.0, 48.0])
    );
    // h · w = [1, 4, 9, 16] leaves [0, 10] at `mlp.scale`; the bias check passes.
    assert!(stdout.contains("1 violations"), "{stdout}");
    assert!(
        stdout.contains("mlp.scale (after instruction 1, r1)"),
        "{stdout}"
    );
    assert!(!stdout.contains("mlp.bias ("), "{stdout}");
    assert!(stdout.contains("max depth 1"), "{stdout}");
    assert!(stdout.contains("rotations 1"), "{stdout}");
    assert!(stdout.contains("mul.p 1"), "{stdout}");
}

fn run_case(dir: &Path, plan: &Plan, tweak: impl FnOnce(&Path)) -> Output {
    let (plan_path, case) = setup(dir, plan);
    tweak(dir);
    let out = dir.join("out");
    cachemir(&[
        "run",
        &plan_path,
        "--backend",
        "sim",
        "--inputs",
        &case,
        "--out",
        out.to_str().unwrap(),
    ])
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    // A weights file without `w`.
    let dir = tempfile::tempdir().unwrap();
    let output = run_case(dir.path(), &tiny_plan(), |d| {
        write_weights(
            &d.join("weights/tiny.safetensors"),
            &[("v", vec![4], vec![0.0; 4])],
        )
    });
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("needs weight `w` of shape [4]"),
        "{}",
        stderr(&output)
    );
    // `w` of another shape.
    let dir = tempfile::tempdir().unwrap();
    let output = run_case(dir.path(), &tiny_plan(), |d| {
        write_weights(
            &d.join("weights/tiny.safetensors"),
            &[("w", vec![2, 2], vec![0.0; 4])],
        )
    });
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("has shape [2, 2]"),
        "{}",
        stderr(&output)
    );
    // A case without the state input.
    let dir = tempfile::tempdir().unwrap();
    let output = run_case(dir.path(), &tiny_plan(), |d| {
        std::fs::write(
            d.join("case/case0.json"),
            r#"{"inputs": [{"name": "x", "file": "x.npy"}, {"name": "pos", "file": "pos.npy"}]}"#,
        )
        .unwrap()
    });
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("`past`"), "{}", stderr(&output));
    // Not a plan.
    let dir = tempfile::tempdir().unwrap();
    let output = run_case(dir.path(), &tiny_plan(), |d| {
        std::fs::write(d.join("tiny.plan"), b"nonsense").unwrap()
    });
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("bad magic"), "{}", stderr(&output));
    // Usage errors.
    assert_eq!(cachemir(&["run", "x.plan"]).status.code(), Some(2));
    let output = cachemir(&[
        "run",
        "x.plan",
        "--backend",
        "cpu",
        "--inputs",
        "c.json",
        "--out",
        "o",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("case files run on --backend sim"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_failing_instruction_exits_1_naming_it() {
    let mut plan = tiny_plan();
    // Free h's register before the rotation reads it.
    plan.instructions[3] = Instruction::Free { a: Src(0) };
    plan.instructions.insert(
        3,
        Instruction::Store {
            src: Src(2),
            output: Io(0),
            part: Part(0),
        },
    );
    plan.instruction_sites.push(0);
    plan.checks.clear();
    let dir = tempfile::tempdir().unwrap();
    let output = run_case(dir.path(), &plan, |_| {});
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("instruction 5 `rot r3, r0, 1` (z)"),
        "{}",
        stderr(&output)
    );
}
