//! `cachemir bench --plan`: a toy leveled plan (ToyBootN12, `--insecure`) gets a cost model file
//! that `CostModel::from_file` (what `cachemirc report --cost-model` calls) loads, with exactly the
//! classes the plan uses, positive at every level, and one bootstrap figure per slot count.

use cachemir_ir::layout::{Layout, Run};
use cachemir_ir::plan::{
    Ciphertexts, CostModel, Dst, Dsts, Instruction as I, Io, Level, PLAN_FORMAT_VERSION, Part,
    Plain, Plaintext, Plan, Scalar, Site, Slots, Src, State, Step, Steps, TensorRef, parameters,
};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

/// ToyBootN12's full packing.
const SLOTS: usize = 2048;
const SPARSE: u32 = 64;

/// A decode step at ToyBootN12 using every class but `neg` and `sub.p`, bootstrapping at two
/// slot counts; levels relative to the set's bootstrap level `b` (≥ 3).
fn toy_plan() -> Plan {
    let parameters = parameters::by_name("ToyBootN12").expect("ToyBootN12 is a named set");
    let b = parameters.bootstrap_level.expect("bootstrappable");
    assert!(b >= 3);
    let vector = Layout::row_major(&[4], SLOTS);
    let io = |name: &str, level| Ciphertexts {
        name: name.into(),
        layout: vector.clone(),
        level: Some(level),
    };
    let run = Run {
        ciphertext: 0,
        slot: 0,
        count: 4,
        element: 0,
        step: 1,
    };
    let w = TensorRef::Weight("w".into());
    let instructions = vec![
        I::Load {
            dst: Dst(0),
            input: Io(0),
            part: Part(0),
        },
        I::Load {
            dst: Dst(1),
            input: Io(1),
            part: Part(0),
        },
        I::Add {
            dst: Dst(2),
            a: Src(0),
            b: Src(1),
        },
        I::Sub {
            dst: Dst(3),
            a: Src(2),
            b: Src(0),
        },
        I::Multiply {
            dst: Dst(4),
            a: Src(3),
            b: Src(1),
        },
        I::Rescale {
            dst: Dst(5),
            a: Src(4),
        },
        I::MultiplyPlain {
            dst: Dst(6),
            a: Src(5),
            plaintext: Plain(0),
        },
        I::Rescale {
            dst: Dst(7),
            a: Src(6),
        },
        I::AddPlain {
            dst: Dst(8),
            a: Src(7),
            plaintext: Plain(0),
        },
        I::AddScalar {
            dst: Dst(9),
            a: Src(8),
            value: Scalar(0.5),
        },
        I::Rotate {
            dst: Dst(10),
            a: Src(9),
            step: Step(1),
        },
        I::RotateHoisted {
            dsts: Dsts(vec![11, 12]),
            a: Src(10),
            steps: Steps(vec![1, 2]),
        },
        I::Add {
            dst: Dst(13),
            a: Src(11),
            b: Src(12),
        },
        I::MultiplyScalar {
            dst: Dst(14),
            a: Src(13),
            value: Scalar(0.25),
        },
        I::Rescale {
            dst: Dst(15),
            a: Src(14),
        },
        I::LevelDown {
            dst: Dst(16),
            a: Src(15),
            level: Level(0),
        },
        I::Bootstrap {
            dst: Dst(17),
            a: Src(16),
            slots: Slots(SLOTS as u32),
            level: Level(b),
            scale: Scalar(1.0),
        },
        I::Bootstrap {
            dst: Dst(18),
            a: Src(16),
            slots: Slots(SPARSE),
            level: Level(b),
            scale: Scalar(1.0),
        },
        I::Add {
            dst: Dst(19),
            a: Src(17),
            b: Src(18),
        },
        I::LevelDown {
            dst: Dst(20),
            a: Src(19),
            level: Level(b - 1),
        },
        I::Store {
            src: Src(20),
            output: Io(0),
            part: Part(0),
        },
        I::Store {
            src: Src(17),
            output: Io(1),
            part: Part(0),
        },
    ];
    let n = instructions.len();
    // Through JSON, so that optional fields added to the format later default to `None`.
    serde_json::from_value(json!({
        "version": PLAN_FORMAT_VERSION,
        "name": "toy-bench",
        "slots": SLOTS,
        "parameters": parameters,
        "weights": "toy.safetensors",
        "weight_shapes": { "w": [4] },
        "client_program": "",
        "public_program": "",
        "public_inputs": [],
        "inputs": [io("x", b), io("past", b)],
        "outputs": [io("y", b - 1), io("present", b)],
        "states": [State { input: "past".into(), output: "present".into() }],
        "plaintexts": [Plaintext::Gather { tensor: w, runs: vec![run], scale: 1.0 }],
        "rotations": [1, 2],
        "registers": 21,
        "instructions": instructions,
        "sites": [Site { name: "step".into(), source: "test".into(), layer: Some(0) }],
        "instruction_sites": vec![0; n],
        "checks": [],
    }))
    .expect("the toy plan deserializes")
}

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cachemir"))
        .arg("bench")
        .args(args)
        .output()
        .expect("run cachemir")
}

fn write_plan(dir: &Path) -> std::path::PathBuf {
    let plan = toy_plan();
    plan.validate().unwrap();
    let path = dir.join("toy.plan");
    std::fs::write(&path, plan.to_bytes().unwrap()).unwrap();
    path
}

#[test]
fn bench_plan_writes_a_cost_model_with_every_class_the_plan_uses() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = write_plan(dir.path());
    let cost = dir.path().join("cost.json");
    let out = bench(&[
        "--plan",
        plan_path.to_str().unwrap(),
        "--insecure",
        "--runs",
        "1",
        "-o",
        cost.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let model = CostModel::from_file(&cost).unwrap();
    assert_eq!(model.log_n, 12);
    assert!(model.source.contains("ToyBootN12"), "{}", model.source);
    let classes: BTreeSet<&str> = model.instructions.keys().map(String::as_str).collect();
    let expected: BTreeSet<&str> = [
        "add",
        "sub",
        "mul",
        "mul.p",
        "add.p",
        "add.s",
        "mul.s",
        "rot",
        "rot.h",
        "rot.h/step",
        "rescale",
        "level.down",
    ]
    .into();
    assert_eq!(classes, expected);
    let top = toy_plan().parameters.unwrap().max_level;
    for (class, cost) in &model.instructions {
        assert!(
            cost.fixed_ms >= 0.0 && cost.per_limb_ms >= 0.0,
            "{class}: {cost:?}"
        );
        for level in 0..=top {
            assert!(model.instruction(class, level) > 0.0, "{class} at {level}");
        }
    }
    let boot: Vec<usize> = model.bootstrap_ms.iter().map(|&(s, _)| s).collect();
    assert_eq!(boot, [SPARSE as usize, SLOTS]);
    assert!(model.bootstrap_ms.iter().all(|&(_, ms)| ms > 0.0));
    // A bootstrap costs more than a key switch, which costs more than an addition.
    let b = toy_plan().parameters.unwrap().bootstrap_level.unwrap();
    assert!(model.bootstrap(SLOTS) > model.instruction("rot", b));
    assert!(model.instruction("rot", b) > model.instruction("add", b));
}

#[test]
fn bench_plan_needs_insecure_for_toy_sets_and_a_readable_plan() {
    let dir = tempfile::tempdir().unwrap();
    let plan_path = write_plan(dir.path());
    let cost = dir.path().join("cost.json");
    let out = bench(&[
        "--plan",
        plan_path.to_str().unwrap(),
        "-o",
        cost.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
    assert!(!cost.exists());
    // A truncated plan file is rejected before any timing.
    let bytes = std::fs::read(&plan_path).unwrap();
    std::fs::write(&plan_path, &bytes[..bytes.len() / 2]).unwrap();
    let out = bench(&[
        "--plan",
        plan_path.to_str().unwrap(),
        "--insecure",
        "-o",
        cost.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plan"));
    // --plan needs -o.
    let out = bench(&["--plan", plan_path.to_str().unwrap(), "--insecure"]);
    assert_eq!(out.status.code(), Some(2));
}
