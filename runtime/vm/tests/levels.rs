//! Leveled plans on the VM and the `sim` backend: levels and scales follow the static trace
//! (`cachemir_ir::plan::levels`), plans that break the level rules fail before any work with an
//! error naming the instruction and its site, and bootstrap inputs outside [−1, 1] are errors.

mod common;

use cachemir_ir::plan::levels::{self, LevelError, LevelRule, LevelState};
use cachemir_ir::plan::{
    Dst, Instruction, Level, Parameters, Plain, Plan, Scalar, Slots, Src, Step, TensorRef,
};
use cachemir_vm::{Backend, BackendError, Client, PlainSlots, SimBackend, Vm, VmError, sim};
use common::{Alteration, Altered, SLOTS, load, store, w_plain};
use std::collections::HashMap;

fn parameters() -> Parameters {
    cachemir_ir::plan::parameters::by_name("ToyBootN12").expect("a named set")
}

/// The level every bootstrap of the parameter set lands at.
fn boot_level() -> u32 {
    parameters().bootstrap_level.expect("a bootstrappable set")
}

/// A leveled plan over 8 slots: input `x` at `input_level`, one output `y{o}` per entry of
/// `output_levels`, the weight `w` (`[8]`) as plaintext 0, and one site per instruction
/// (`site{k}`, source `test`); registers and rotations are derived.
fn leveled_plan(input_level: u32, output_levels: &[u32], instructions: Vec<Instruction>) -> Plan {
    let output_levels: Vec<Option<u32>> = output_levels.iter().copied().map(Some).collect();
    common::plan(
        "leveled",
        Some(parameters()),
        Some(input_level),
        &output_levels,
        vec![w_plain()],
        instructions,
    )
}

/// w = [1.0, 0.9, …, 0.3].
fn w() -> Vec<f64> {
    (0..SLOTS).map(|s| 1.0 - 0.1 * s as f64).collect()
}

fn tensors() -> HashMap<TensorRef, Vec<f64>> {
    common::weights(w())
}

/// x = [0.1, 0.2, …, 0.8]: x · w stays in [−1, 1].
fn x() -> Vec<f64> {
    (0..SLOTS).map(|s| (s + 1) as f64 / 10.0).collect()
}

fn mul_w(dst: u32, a: u32) -> Instruction {
    Instruction::MultiplyPlain {
        dst: Dst(dst),
        a: Src(a),
        plaintext: Plain(0),
    }
}

fn rescale(dst: u32, a: u32) -> Instruction {
    Instruction::Rescale {
        dst: Dst(dst),
        a: Src(a),
    }
}

fn add(dst: u32, a: u32, b: u32) -> Instruction {
    Instruction::Add {
        dst: Dst(dst),
        a: Src(a),
        b: Src(b),
    }
}

/// x at level 5: `mul.p` (5, Δ²) → `rescale` (4, Δ) → `rot 1` (4, Δ) → `boot` of `boot_slots`
/// slots (the bootstrap level, Δ) → `y0`; the rotated value also goes to `y1` (level 4).
fn pipeline(boot_slots: u32) -> Plan {
    leveled_plan(
        5,
        &[boot_level(), 4],
        vec![
            load(0),
            mul_w(1, 0),
            rescale(2, 1),
            Instruction::Rotate {
                dst: Dst(3),
                a: Src(2),
                step: Step(1),
            },
            Instruction::Bootstrap {
                dst: Dst(4),
                a: Src(3),
                slots: Slots(boot_slots),
                level: Level(boot_level()),
                scale: Scalar(1.0),
            },
            store(4, 0),
            store(3, 1),
        ],
    )
}

/// The level error of `plan`, which must fail preparation (before any instruction runs) and
/// `sim::execute` alike.
fn level_error(plan: &Plan) -> LevelError {
    let weights = tensors();
    let err = Vm::new(plan, &weights).expect_err("the plan breaks the level rules");
    let VmError::Levels(error) = err else {
        panic!("expected VmError::Levels, got {err:?}");
    };
    let again = sim::execute(plan, &weights, &[vec![x()]]).expect_err("sim runs the VM");
    assert!(
        matches!(&again, VmError::Levels(e) if *e == error),
        "{again}"
    );
    error
}

#[test]
fn a_leveled_plan_runs_with_the_levels_and_scales_of_the_trace() {
    let plan = pipeline(8);
    let trace = levels::trace(&plan).unwrap().expect("a leveled plan");
    let state = |level, degree| Some(LevelState { level, degree });
    assert_eq!(
        trace.states,
        [
            state(5, 1),
            state(5, 2),
            state(4, 1),
            state(4, 1),
            state(boot_level(), 1),
            None,
            None
        ]
    );
    let (outputs, report) = sim::execute_with_report(&plan, &tensors(), &[vec![x()]]).unwrap();
    let (x, w) = (x(), w());
    let want: Vec<f64> = (0..SLOTS)
        .map(|s| x[(s + 1) % SLOTS] * w[(s + 1) % SLOTS])
        .collect();
    assert_eq!(outputs[0][0], want);
    assert_eq!(outputs[1][0], want);
    // Levels from the trace, scales from `log_scale` (45 bits), depth reset by the bootstrap.
    let summary: Vec<(Option<u32>, f64, Option<u32>)> = report
        .outputs
        .iter()
        .map(|o| (o.level, o.scale_bits, o.depth))
        .collect();
    assert_eq!(
        summary,
        [
            (Some(boot_level()), 45.0, Some(0)),
            (Some(4), 45.0, Some(1))
        ]
    );

    // The same on `Vm::run` with a client encrypting at the declared level.
    let backend = SimBackend::for_plan(&plan);
    let input = backend.encrypt_at(&x, Some(5)).unwrap();
    let weights = tensors();
    let execution = Vm::new(&plan, &weights)
        .unwrap()
        .run(&backend, vec![vec![input]])
        .unwrap();
    let y0 = &execution.outputs[0][0];
    assert_eq!(
        (y0.level, y0.scale_bits, &y0.values),
        (Some(boot_level()), 45.0, &want)
    );
}

#[test]
fn sim_levels_and_scales_follow_the_parameters() {
    let leveled = SimBackend::leveled(SLOTS, &parameters());
    assert_eq!(leveled.fresh_scale_bits(), 45.0);
    let fresh = leveled.encrypt(&x()).unwrap();
    assert_eq!(
        (fresh.level, fresh.scale_bits),
        (Some(parameters().max_level), 45.0)
    );
    let c = leveled.encrypt_at(&x(), Some(1)).unwrap();
    assert_eq!((c.level, c.scale_bits), (Some(1), 45.0));
    let w = w();
    let p = PlainSlots {
        index: 0,
        values: &w,
    };
    let product = leveled.mul_plain(&c, p).unwrap();
    assert_eq!(
        (product.level, product.scale_bits, product.depth),
        (Some(1), 90.0, 1)
    );
    let rescaled = leveled.rescale(&product).unwrap();
    assert_eq!((rescaled.level, rescaled.scale_bits), (Some(0), 45.0));
    let squared = leveled.mul_scalar(&rescaled, 0.5).unwrap();
    assert_eq!(squared.scale_bits, 90.0);
    // No level left below 0, and levels only go down.
    let err = leveled.rescale(&squared).unwrap_err();
    assert!(
        matches!(&err, BackendError::Failed(m) if m.contains("rescale at level 0")),
        "{err}"
    );
    let err = leveled.level_down(&rescaled, 2).unwrap_err();
    assert!(
        matches!(&err, BackendError::Failed(m) if m.contains("from level 0 to 2")),
        "{err}"
    );
    let booted = leveled.bootstrap(&rescaled, 8, 3, 1.0).unwrap();
    assert_eq!(
        (booted.level, booted.scale_bits, booted.depth),
        (Some(3), 45.0, 0)
    );
    // Unleveled: no level, 40-bit scales.
    let plain = SimBackend::new(SLOTS).encrypt(&x()).unwrap();
    assert_eq!(
        (plain.level, plain.scale_bits),
        (None, sim::FRESH_SCALE_BITS)
    );
    let mut unleveled = pipeline(8);
    unleveled.parameters = None;
    assert_eq!(
        SimBackend::for_plan(&unleveled).fresh_scale_bits(),
        sim::FRESH_SCALE_BITS
    );
    assert_eq!(SimBackend::for_plan(&pipeline(8)).fresh_scale_bits(), 45.0);
}

#[test]
fn running_out_of_levels_fails_naming_the_instruction_and_site() {
    // Level 1 → 0 after the first rescale; the second has no level left.
    let plan = leveled_plan(
        1,
        &[0],
        vec![
            load(0),
            mul_w(1, 0),
            rescale(2, 1),
            mul_w(3, 2),
            rescale(4, 3),
            store(4, 0),
        ],
    );
    let error = level_error(&plan);
    assert_eq!(
        (error.instruction, &error.rule),
        (4, &LevelRule::OutOfLevels)
    );
    let message = VmError::Levels(error).to_string();
    assert!(
        message.contains("instruction 4 (rescale r4, r3) at site site4 (test)")
            && message.contains("rescale at level 0: no level left"),
        "{message}"
    );
}

#[test]
fn adding_values_at_different_levels_fails() {
    let plan = leveled_plan(
        2,
        &[1],
        vec![
            load(0),
            mul_w(1, 0),
            rescale(2, 1),
            add(3, 2, 0),
            store(3, 0),
        ],
    );
    let error = level_error(&plan);
    assert_eq!(
        (error.instruction, &error.rule),
        (3, &LevelRule::LevelMismatch(1, 2))
    );
    let message = VmError::Levels(error).to_string();
    assert!(
        message.contains("instruction 3 (add r3, r2, r0) at site site3 (test)")
            && message.contains("levels 1 and 2"),
        "{message}"
    );
}

#[test]
fn adding_scale_delta_squared_to_delta_fails() {
    let plan = leveled_plan(
        2,
        &[2],
        vec![load(0), mul_w(1, 0), add(2, 1, 0), store(2, 0)],
    );
    let error = level_error(&plan);
    assert_eq!(
        (error.instruction, &error.rule),
        (2, &LevelRule::ScaleMismatch(2, 1))
    );
    let message = VmError::Levels(error).to_string();
    assert!(
        message.contains("instruction 2 (add r2, r1, r0) at site site2 (test)")
            && message.contains("scales Δ^2 and Δ^1"),
        "{message}"
    );
}

#[test]
fn storing_at_another_level_than_the_output_declares_fails() {
    let plan = leveled_plan(
        2,
        &[2],
        vec![load(0), mul_w(1, 0), rescale(2, 1), store(2, 0)],
    );
    let error = level_error(&plan);
    assert_eq!(
        (error.instruction, &error.rule),
        (
            3,
            &LevelRule::OutputLevel {
                output: 0,
                found: 1,
                expected: 2
            }
        )
    );
    let message = VmError::Levels(error).to_string();
    assert!(
        message.contains("instruction 3 (store r2, io0, #0) at site site3 (test)")
            && message.contains("store at level 1; output 0 is declared at level 2"),
        "{message}"
    );
}

#[test]
fn a_bootstrap_input_outside_minus_one_one_is_an_error() {
    let weights = tensors();
    // x[3] = 2 → the bootstrap input (x · w rotated by 1) holds 2 · 0.7 = 1.4 in slot 2.
    let mut big = x();
    big[3] = 2.0;
    let err = sim::execute(&pipeline(8), &weights, &[vec![big.clone()]]).unwrap_err();
    let VmError::BootstrapRange {
        index,
        ref instruction,
        ref site,
        slot,
        value,
        max,
        occupied,
        ..
    } = err
    else {
        panic!("expected VmError::BootstrapRange, got {err:?}");
    };
    assert_eq!(
        (index, instruction.as_str(), site.as_str(), slot, occupied),
        (4, "boot r4, r3, slots=8, level=9, 1e0", "site4", 2, 8)
    );
    assert!((value - 1.4).abs() < 1e-12 && value == max, "{value} {max}");
    let message = err.to_string();
    assert!(
        message.contains("instruction 4 `boot r4, r3, slots=8, level=9, 1e0` (site4)")
            && message.contains("outside [-1, 1]"),
        "{message}"
    );

    // Below −1 and NaN are errors too.
    let mut negative = x();
    negative[0] = -3.0;
    let err = sim::execute(&pipeline(8), &weights, &[vec![negative]]).unwrap_err();
    assert!(
        matches!(err, VmError::BootstrapRange { slot: 7, .. }),
        "{err}"
    );
    let mut nan = x();
    nan[5] = f64::NAN;
    let err = sim::execute(&pipeline(8), &weights, &[vec![nan]]).unwrap_err();
    assert!(
        matches!(err, VmError::BootstrapRange { slot: 4, min, .. } if min.is_nan()),
        "{err}"
    );

    // Only occupied slots count: a bootstrap of 2 slots ignores slot 2.
    let (outputs, _) = sim::execute_with_report(&pipeline(2), &weights, &[vec![big.clone()]])
        .expect("slot 2 is not occupied");
    assert!((outputs[0][0][2] - 1.4).abs() < 1e-12);
    let err = sim::execute(&pipeline(4), &weights, &[vec![big.clone()]]).unwrap_err();
    assert!(
        matches!(
            err,
            VmError::BootstrapRange {
                slot: 2,
                occupied: 4,
                ..
            }
        ),
        "{err}"
    );

    // A plan without parameters has no level rules: its bootstraps take any value.
    let mut unleveled = pipeline(8);
    unleveled.parameters = None;
    for io in unleveled.inputs.iter_mut().chain(&mut unleveled.outputs) {
        io.level = None;
    }
    let outputs = sim::execute(&unleveled, &weights, &[vec![big]]).unwrap();
    assert!((outputs[0][0][2] - 1.4).abs() < 1e-12);
}

#[test]
fn an_input_at_another_level_than_declared_is_rejected() {
    let plan = pipeline(8);
    let backend = SimBackend::for_plan(&plan);
    let weights = tensors();
    let vm = Vm::new(&plan, &weights).unwrap();
    let input = backend.encrypt_at(&x(), Some(4)).unwrap();
    let err = vm.run(&backend, vec![vec![input]]).unwrap_err();
    assert!(
        matches!(&err, VmError::Input { name, part: 0, message }
            if name == "x" && message.contains("level 4; the plan declares level 5")),
        "{err}"
    );
}

#[test]
fn a_backend_level_that_differs_from_the_trace_is_an_error() {
    let plan = pipeline(8);
    // `sim` with a broken `rescale` that keeps the level: the VM notices that the backend's level
    // is not the trace's.
    let backend = Altered {
        sim: SimBackend::for_plan(&plan),
        name: "stuck",
        alteration: Alteration::RescaleKeepsLevel,
    };
    let input = backend.sim.encrypt_at(&x(), Some(5)).unwrap();
    let weights = tensors();
    let err = Vm::new(&plan, &weights)
        .unwrap()
        .run(&backend, vec![vec![input]])
        .unwrap_err();
    assert!(
        matches!(&err, VmError::Instruction { index: 2, site, message, .. }
            if site == "site2"
                && message.contains("the stuck backend holds level 5; the plan's level rules give level 4")),
        "{err}"
    );
}
