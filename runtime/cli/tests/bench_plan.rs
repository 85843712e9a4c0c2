//! `cachemir bench --plan`: a toy leveled plan (ToyBootN12, `--insecure`) gets a cost model file
//! that `CostModel::from_file` (what `cachemirc report --cost-model` calls) loads, with exactly the
//! classes the plan uses, positive at every level, and one bootstrap figure per slot count.

use cachemir_ir::plan::{CostModel, Plan};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Output;

#[path = "support/binary.rs"]
mod binary;
#[path = "support/toy_step.rs"]
mod toy_step;
use binary::{arg, cachemir, refused, text};
use toy_step::{TOY_SLOTS, ToyStep};

const SPARSE: u32 = 64;

/// A decode step at ToyBootN12 using every class but `neg` and `sub.p`, bootstrapping at two
/// slot counts; levels relative to the set's bootstrap level (≥ 3).
fn toy_plan() -> Plan {
    let ToyStep {
        mut builder,
        level,
        x,
        past,
        y,
        present,
    } = ToyStep::new("toy-bench", "toy.safetensors");
    assert!(level >= 3);
    let b = &mut builder;
    let w = b.gathered_weight("w", &[4]);
    let sum = b.add(x, past);
    let difference = b.sub(sum, x);
    let product = b.multiply(difference, past);
    let product = b.rescale(product);
    let weighted = b.multiply_plain(product, w);
    let mut v = b.rescale(weighted);
    v = b.add_plain(v, w);
    v = b.add_scalar(v, 0.5);
    v = b.rotate(v, 1);
    let pair = b.rotate_hoisted(v, &[1, 2]);
    v = b.add(pair[0], pair[1]);
    v = b.multiply_scalar(v, 0.25);
    v = b.rescale(v);
    let bottom = b.level_down(v, 0);
    let full = b.bootstrap(bottom, TOY_SLOTS as u32, level, 1.0);
    let sparse = b.bootstrap(bottom, SPARSE, level, 1.0);
    let both = b.add(full, sparse);
    let lowered = b.level_down(both, level - 1);
    b.store(lowered, y, 0);
    b.store(full, present, 0);
    builder.build()
}

fn bench(args: &[&str]) -> Output {
    cachemir(&[&["bench"], args].concat())
}

/// A scratch folder holding the toy plan, the plan's path and where the cost model goes.
fn scratch() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let plan = toy_plan();
    plan.validate().unwrap();
    let path = dir.path().join("toy.plan");
    std::fs::write(&path, plan.to_bytes().unwrap()).unwrap();
    let cost = dir.path().join("cost.json");
    (dir, path, cost)
}

#[test]
fn bench_plan_writes_a_cost_model_with_every_class_the_plan_uses() {
    let (_dir, plan, cost) = scratch();
    let out = bench(&[
        "--plan",
        &arg(&plan),
        "--insecure",
        "--runs",
        "1",
        "-o",
        &arg(&cost),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
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
    assert_eq!(boot, [SPARSE as usize, TOY_SLOTS]);
    assert!(model.bootstrap_ms.iter().all(|&(_, ms)| ms > 0.0));
    // A bootstrap costs more than a key switch, which costs more than an addition.
    let b = toy_plan().parameters.unwrap().bootstrap_level.unwrap();
    assert!(model.bootstrap(TOY_SLOTS) > model.instruction("rot", b));
    assert!(model.instruction("rot", b) > model.instruction("add", b));
}

#[test]
fn bench_plan_needs_insecure_for_toy_sets_and_a_readable_plan() {
    let (_dir, plan_path, cost) = scratch();
    let plan = arg(&plan_path);
    refused(&bench(&["--plan", &plan, "-o", &arg(&cost)]), "--insecure");
    assert!(!cost.exists());
    // A truncated plan file is rejected before any timing.
    let bytes = std::fs::read(&plan).unwrap();
    std::fs::write(&plan, &bytes[..bytes.len() / 2]).unwrap();
    refused(
        &bench(&["--plan", &plan, "--insecure", "-o", &arg(&cost)]),
        "plan",
    );
    // --plan needs -o.
    let out = bench(&["--plan", &plan, "--insecure"]);
    assert_eq!(out.status.code(), Some(2));
}
