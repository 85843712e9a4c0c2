//! The VM on hand-built tiny plans: every opcode on `sim`, depth and scale bookkeeping, register
//! freeing, the plaintext cache, range checks, and errors that name the instruction and its site.

mod common;

use cachemir_ir::layout::Run;
use cachemir_ir::plan::{
    Dst, Dsts, Instruction, Level, Plain, Plaintext, Plan, RangeCheck, Scalar, Slots, Src, Step,
    Steps, TensorRef,
};
use cachemir_vm::{SimBackend, Vm, VmError, VmOptions, sim};
use common::{Alteration, Altered, SLOTS, load, run, store, w_plain};
use std::collections::HashMap;

/// A plan over 8 slots with one input `x` and `outputs` outputs (all row-major `[8]`), the weight
/// `w` of shape `[8]`, and the given plaintexts and instructions (one site per instruction:
/// `site{k}`); registers and rotations are derived.
fn tiny_plan(outputs: usize, plaintexts: Vec<Plaintext>, instructions: Vec<Instruction>) -> Plan {
    common::plan(
        "tiny",
        None,
        None,
        &vec![None; outputs],
        plaintexts,
        instructions,
    )
}

fn tensors() -> HashMap<TensorRef, Vec<f64>> {
    common::weights((0..SLOTS).map(|i| 10.0 + i as f64).collect())
}

fn x() -> Vec<f64> {
    (0..SLOTS).map(|i| i as f64 + 1.0).collect()
}

#[test]
fn every_opcode_on_sim() {
    use Instruction::*;
    let program = vec![
        load(0),
        Add {
            dst: Dst(1),
            a: Src(0),
            b: Src(0),
        },
        Sub {
            dst: Dst(2),
            a: Src(1),
            b: Src(0),
        },
        Multiply {
            dst: Dst(3),
            a: Src(2),
            b: Src(0),
        },
        AddPlain {
            dst: Dst(4),
            a: Src(0),
            plaintext: Plain(0),
        },
        SubPlain {
            dst: Dst(5),
            a: Src(0),
            plaintext: Plain(1),
        },
        MultiplyPlain {
            dst: Dst(6),
            a: Src(0),
            plaintext: Plain(0),
        },
        AddScalar {
            dst: Dst(7),
            a: Src(0),
            value: Scalar(0.5),
        },
        MultiplyScalar {
            dst: Dst(8),
            a: Src(0),
            value: Scalar(-2.0),
        },
        Negate {
            dst: Dst(9),
            a: Src(0),
        },
        Rotate {
            dst: Dst(10),
            a: Src(0),
            step: Step(3),
        },
        RotateHoisted {
            dsts: Dsts(vec![11, 12]),
            a: Src(0),
            steps: Steps(vec![1, -1]),
        },
        Rescale {
            dst: Dst(13),
            a: Src(3),
        },
        LevelDown {
            dst: Dst(14),
            a: Src(13),
            level: Level(3),
        },
        Bootstrap {
            dst: Dst(15),
            a: Src(14),
            slots: Slots(8),
            level: Level(9),
            scale: Scalar(1.0),
        },
        Free { a: Src(15) },
    ];
    let mut instructions = program.clone();
    for (o, r) in [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
        .into_iter()
        .enumerate()
    {
        instructions.insert(instructions.len() - 1, store(r, o as u32));
    }
    instructions.insert(instructions.len() - 1, store(15, 12));
    let mask = Plaintext::Fill {
        runs: vec![run(2, 3)],
        value: 1.0,
    };
    let plan = tiny_plan(13, vec![w_plain(), mask], instructions);
    let x = x();
    let w: Vec<f64> = tensors()[&TensorRef::Weight("w".into())].clone();
    let (outputs, report) =
        sim::execute_with_report(&plan, &tensors(), &[vec![x.clone()]]).unwrap();
    let map = |f: &dyn Fn(usize) -> f64| (0..SLOTS).map(f).collect::<Vec<f64>>();
    let expected = [
        map(&|s| x[s] * x[s]),
        map(&|s| x[s] + w[s]),
        map(&|s| x[s] - if (2..5).contains(&s) { 1.0 } else { 0.0 }),
        map(&|s| x[s] * w[s]),
        map(&|s| x[s] + 0.5),
        map(&|s| -2.0 * x[s]),
        map(&|s| -x[s]),
        map(&|s| x[(s + 3) % SLOTS]),
        map(&|s| x[(s + 1) % SLOTS]),
        map(&|s| x[(s + SLOTS - 1) % SLOTS]),
        map(&|s| x[s] * x[s]),
        map(&|s| x[s] * x[s]),
        map(&|s| x[s] * x[s]),
    ];
    for (o, want) in expected.iter().enumerate() {
        assert_eq!(&outputs[o][0], want, "output y{o}");
    }
    // Bookkeeping: mul and mul.p and mul.s add one to the depth; boot resets it.
    let depth: Vec<Option<u32>> = report.outputs.iter().map(|o| o.depth).collect();
    let one = Some(1);
    let zero = Some(0);
    assert_eq!(
        depth,
        [
            one, zero, zero, one, zero, one, zero, zero, zero, zero, one, one, zero
        ]
    );
    let scale: Vec<f64> = report.outputs.iter().map(|o| o.scale_bits).collect();
    assert_eq!(
        scale,
        [
            80.0, 40.0, 40.0, 80.0, 40.0, 80.0, 40.0, 40.0, 40.0, 40.0, 40.0, 40.0, 40.0
        ]
    );
    let level: Vec<Option<u32>> = report.outputs.iter().map(|o| o.level).collect();
    assert_eq!(level[11], Some(3));
    assert_eq!(level[12], Some(9));
    assert_eq!(report.max_depth(), Some(1));
    assert_eq!(report.rotations, 3);
    assert_eq!(report.counts["rot.h"], 1);
    assert_eq!(report.counts["store"], 13);
    assert_eq!(report.instructions(), plan.instructions.len());
    // p0 is built once and cached for its second use.
    assert_eq!(report.plaintexts_built, 2);
    assert!(report.to_string().contains("max depth 1"), "{report}");
    // The compatibility entry point agrees.
    assert_eq!(
        sim::execute(&plan, &tensors(), &[vec![x]]).unwrap(),
        outputs
    );
}

#[test]
fn registers_are_freed_at_their_last_use() {
    use Instruction::*;
    // A chain r0 → r1 → r2 → … where each value dies as the next is made: never more than two
    // live at once, dead writes (r9) included.
    let mut instructions = vec![load(0)];
    for r in 0..8 {
        instructions.push(AddScalar {
            dst: Dst(r + 1),
            a: Src(r),
            value: Scalar(1.0),
        });
    }
    instructions.push(Negate {
        dst: Dst(9),
        a: Src(8),
    });
    instructions.push(store(8, 0));
    let plan = tiny_plan(1, vec![], instructions);
    let (outputs, report) = sim::execute_with_report(&plan, &tensors(), &[vec![x()]]).unwrap();
    assert_eq!(
        outputs[0][0],
        x().iter().map(|v| v + 8.0).collect::<Vec<_>>()
    );
    assert_eq!(report.peak_live_registers, 2);

    // Without last-use freeing, a fan-out keeps every value: here all four are read at the end.
    let mut instructions = vec![load(0)];
    for r in 1..4 {
        instructions.push(Rotate {
            dst: Dst(r),
            a: Src(0),
            step: Step(r as i32),
        });
    }
    instructions.push(Add {
        dst: Dst(4),
        a: Src(1),
        b: Src(2),
    });
    instructions.push(Add {
        dst: Dst(5),
        a: Src(4),
        b: Src(3),
    });
    instructions.push(store(5, 0));
    let plan = tiny_plan(1, vec![], instructions);
    let (_, report) = sim::execute_with_report(&plan, &tensors(), &[vec![x()]]).unwrap();
    // r0 dies after the third rotation: r1, r2, r3 then r4 with r3 live.
    assert_eq!(report.peak_live_registers, 4);
}

#[test]
fn register_reuse_in_place() {
    use Instruction::*;
    // `add r0, r0, r0` twice: the register is read and rewritten by the same instruction.
    let instructions = vec![
        load(0),
        Add {
            dst: Dst(0),
            a: Src(0),
            b: Src(0),
        },
        Add {
            dst: Dst(0),
            a: Src(0),
            b: Src(0),
        },
        store(0, 0),
        store(0, 1),
    ];
    let plan = tiny_plan(2, vec![], instructions);
    let outputs = sim::execute(&plan, &tensors(), &[vec![x()]]).unwrap();
    let want: Vec<f64> = x().iter().map(|v| 4.0 * v).collect();
    assert_eq!(outputs[0][0], want);
    assert_eq!(outputs[1][0], want);
}

#[test]
fn a_read_after_free_names_the_instruction_and_site() {
    use Instruction::*;
    let instructions = vec![
        load(0),
        Free { a: Src(0) },
        Negate {
            dst: Dst(1),
            a: Src(0),
        },
        store(1, 0),
    ];
    let plan = tiny_plan(1, vec![], instructions);
    let err = sim::execute(&plan, &tensors(), &[vec![x()]]).unwrap_err();
    assert!(
        matches!(err, VmError::Instruction { index: 2, .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("instruction 2 `neg r1, r0` (site2)") && text.contains("r0 holds no value"),
        "{text}"
    );
}

#[test]
fn an_unknown_weight_is_rejected_before_execution() {
    let instructions = vec![
        load(0),
        Instruction::MultiplyPlain {
            dst: Dst(1),
            a: Src(0),
            plaintext: Plain(0),
        },
        store(1, 0),
    ];
    let plan = tiny_plan(1, vec![w_plain()], instructions);
    let err = Vm::new(&plan, &HashMap::new()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("weight w") && text.contains("instruction 1 `mul.p r1, r0, p0` (site1)"),
        "{text}"
    );
    // A weight of the wrong size.
    let short = HashMap::from([(TensorRef::Weight("w".into()), vec![1.0; 3])]);
    let err = Vm::new(&plan, &short).unwrap_err().to_string();
    assert!(err.contains("3 values") && err.contains("[8]"), "{err}");
    // A weight outside the plan's weight list does not even validate.
    let mut bad = plan.clone();
    bad.weight_shapes.clear();
    assert!(matches!(Vm::new(&bad, &tensors()), Err(VmError::Plan(_))));
}

#[test]
fn range_violations_are_reported_with_the_site_name() {
    let instructions = vec![
        load(0),
        Instruction::MultiplyScalar {
            dst: Dst(1),
            a: Src(0),
            value: Scalar(2.0),
        },
        store(1, 0),
    ];
    let mut plan = tiny_plan(1, vec![], instructions);
    plan.sites[1].name = "layer0.mlp.scale".into();
    let check = |low: f64, high: f64, occupied: Vec<Run>| RangeCheck {
        after: 1,
        register: 1,
        site: 1,
        low,
        high,
        occupied,
    };
    // x = 1..8 doubled: [2, 16]; slots 0..4 hold [2, 8].
    plan.checks = vec![
        check(0.0, 20.0, vec![run(0, 8)]),
        check(0.0, 10.0, vec![run(0, 4)]),
        check(3.0, 10.0, vec![run(0, 4)]),
        check(0.0, 10.0, vec![run(0, 8)]),
    ];
    let (outputs, report) = sim::execute_with_report(&plan, &tensors(), &[vec![x()]]).unwrap();
    assert_eq!(outputs[0][0][7], 16.0);
    assert_eq!(report.checks_evaluated, 4);
    assert_eq!(report.violations.len(), 2);
    let v = &report.violations[0];
    assert_eq!(
        (v.site.as_str(), v.instruction, v.min, v.max, v.low, v.high),
        ("layer0.mlp.scale", 1, 2.0, 8.0, 3.0, 10.0)
    );
    assert_eq!(
        (report.violations[1].min, report.violations[1].max),
        (2.0, 16.0)
    );
    assert!(report.to_string().contains("layer0.mlp.scale"));
    // Checks can be switched off.
    let weights = tensors();
    let vm = Vm::new(&plan, &weights).unwrap().with_options(VmOptions {
        check_ranges: false,
        ..VmOptions::default()
    });
    let backend = SimBackend::new(SLOTS);
    let input = cachemir_vm::Client::encrypt(&backend, &x()).unwrap();
    let execution = vm.run(&backend, vec![vec![input]]).unwrap();
    assert!(execution.report.violations.is_empty());
    // A check naming a register that does not exist is an invalid plan.
    plan.checks[0].register = 99;
    assert!(matches!(Vm::new(&plan, &tensors()), Err(VmError::Plan(_))));
}

#[test]
fn the_plaintext_cache_is_bounded() {
    use Instruction::*;
    let mul = |dst: u32, a: u32, p: u32| MultiplyPlain {
        dst: Dst(dst),
        a: Src(a),
        plaintext: Plain(p),
    };
    let instructions = vec![
        load(0),
        mul(1, 0, 0),
        mul(2, 1, 1),
        mul(3, 2, 0),
        mul(4, 3, 1),
        store(4, 0),
    ];
    let half = Plaintext::Gather {
        tensor: TensorRef::Weight("w".into()),
        runs: vec![run(0, 8)],
        scale: 0.5,
    };
    let plan = tiny_plan(1, vec![w_plain(), half], instructions);
    let backend = SimBackend::new(SLOTS);
    let weights = tensors();
    let go = |bytes: usize| {
        let vm = Vm::new(&plan, &weights).unwrap().with_options(VmOptions {
            plaintext_cache_bytes: bytes,
            check_ranges: true,
        });
        let input = cachemir_vm::Client::encrypt(&backend, &x()).unwrap();
        vm.run(&backend, vec![vec![input]]).unwrap()
    };
    let roomy = go(1 << 20);
    let tight = go(0);
    assert_eq!(roomy.report.plaintexts_built, 2);
    // One vector fits: p0 stays, p1 is rebuilt.
    assert_eq!(tight.report.plaintexts_built, 3);
    assert_eq!(roomy.outputs, tight.outputs);
    let w = &tensors()[&TensorRef::Weight("w".into())];
    let want: Vec<f64> = (0..SLOTS)
        .map(|s| x()[s] * (w[s] * w[s] * 0.5).powi(2))
        .collect();
    assert_eq!(roomy.outputs[0][0].values, want);
    assert_eq!(roomy.report.outputs[0].depth, Some(4));
    assert_eq!(roomy.report.outputs[0].scale_bits, 200.0);
}

#[test]
fn inputs_and_outputs_that_do_not_fit_are_errors() {
    let plan = tiny_plan(1, vec![], vec![load(0), store(0, 0)]);
    let err = sim::execute(&plan, &tensors(), &[]).unwrap_err();
    assert!(
        matches!(
            err,
            VmError::Inputs {
                given: 0,
                expected: 1
            }
        ),
        "{err}"
    );
    let err = sim::execute(&plan, &tensors(), &[vec![]]).unwrap_err();
    assert!(matches!(err, VmError::InputParts { .. }), "{err}");
    let err = sim::execute(&plan, &tensors(), &[vec![vec![1.0; 3]]]).unwrap_err();
    assert!(err.to_string().contains("input x ciphertext 0"), "{err}");
    let unstored = tiny_plan(1, vec![], vec![load(0)]);
    let err = sim::execute(&unstored, &tensors(), &[vec![x()]]).unwrap_err();
    assert!(
        matches!(err, VmError::OutputNotWritten { part: 0, .. }),
        "{err}"
    );
    let err = Vm::new(&plan, &tensors())
        .unwrap()
        .run(&SimBackend::new(16), vec![vec![]])
        .unwrap_err();
    assert!(
        matches!(
            err,
            VmError::Slots {
                plan: 8,
                given: 16,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn any_backend_runs_plans() {
    use Instruction::*;
    let instructions = vec![
        load(0),
        RotateHoisted {
            dsts: Dsts(vec![1, 2]),
            a: Src(0),
            steps: Steps(vec![2, 4]),
        },
        Add {
            dst: Dst(3),
            a: Src(1),
            b: Src(2),
        },
        store(3, 0),
    ];
    let mut plan = tiny_plan(1, vec![], instructions);
    plan.checks = vec![RangeCheck {
        after: 2,
        register: 3,
        site: 2,
        low: 0.0,
        high: 0.0,
        occupied: vec![run(0, 8)],
    }];
    // A backend that cannot read its values (like CKKS without the secret key) and refuses
    // bootstrapping: the VM skips range checks and reports backend errors with their instruction.
    let backend = Altered {
        sim: SimBackend::new(SLOTS),
        name: "opaque",
        alteration: Alteration::NoBootstrap,
    };
    let input = cachemir_vm::Client::encrypt(&backend.sim, &x()).unwrap();
    let weights = tensors();
    let vm = Vm::new(&plan, &weights).unwrap();
    let execution = vm.run(&backend, vec![vec![input]]).unwrap();
    assert_eq!(execution.report.checks_skipped, 1);
    assert!(execution.report.violations.is_empty());
    let want: Vec<f64> = (0..SLOTS)
        .map(|s| x()[(s + 2) % SLOTS] + x()[(s + 4) % SLOTS])
        .collect();
    assert_eq!(execution.outputs[0][0].values, want);

    let boot = tiny_plan(
        1,
        vec![],
        vec![
            load(0),
            Bootstrap {
                dst: Dst(1),
                a: Src(0),
                slots: Slots(8),
                level: Level(1),
                scale: Scalar(1.0),
            },
            store(1, 0),
        ],
    );
    let input = cachemir_vm::Client::encrypt(&backend.sim, &x()).unwrap();
    let err = Vm::new(&boot, &weights)
        .unwrap()
        .run(&backend, vec![vec![input]])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("instruction 1 `boot r1, r0, slots=8, level=1, 1e0` (site1)")
            && err.contains("not supported by the opaque backend: bootstrapping"),
        "{err}"
    );
}
