//! `cachemirc report` and `cachemirc dot`: the report of a hand-built leveled plan against
//! hand-computed key bytes, level profile, depth, memory, bootstrap list and latency (from the
//! default CPU cost model's published figures); the reports of the tiny Llama decode step and of
//! one MiniLM encoder layer compiled by the `cachemirc` binary (snapshotted, and checked against
//! the plan's own counts); and the binary's `report` / `dot` subcommands and their errors.

use cachemir_compiler::reference::models_dir;
use cachemir_compiler::report::{PlanReport, ReportOptions, dot::dot};
use cachemir_ir::layout::Layout;
use cachemir_ir::plan::builder::PlanBuilder;
use cachemir_ir::plan::{
    CostModel, Instruction, Parameters, Plaintext, Plan, RangeCheck, TensorRef,
};
use std::collections::BTreeMap;
use std::path::Path;

#[path = "support/binary.rs"]
mod binary;
use binary::{cachemirc, text};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// A decode-shaped leveled plan of 8 slots over N = 2^12 (levels 0..=5, bootstrap to 4, dnum 3,
/// 2 special primes): layer 0 multiplies by a weight, rotates (hoisted, steps 1 and 2), squares;
/// layer 1 bootstraps, rotates by 1 and halves; the store is outside layers. A KV-cache state of
/// 3 past rows rides along.
fn leveled_plan() -> Plan {
    let x = Layout::row_major(&[4], 8);
    let past = Layout::row_major(&[1, 1, 3, 2], 8);
    let present = Layout::row_major(&[1, 1, 4, 2], 8);
    let mut b = PlanBuilder::new("hand", 8);
    b.parameters(Parameters {
        name: "Hand".into(),
        log_n: 12,
        log_scale: 40,
        max_level: 5,
        bootstrap_level: Some(4),
        special_primes: 2,
        dnum: 3,
        toy: true,
    })
    .weights("hand.safetensors")
    .weight("w", &[4])
    .state("past", "present");
    let input = b.input("x", &x, Some(2));
    b.input("past", &past, Some(3));
    let y = b.output("y", &x, Some(3));
    b.output("present", &present, Some(3));
    let w = b.plaintext(Plaintext::Gather {
        tensor: TensorRef::Weight("w".into()),
        runs: vec![],
        scale: 1.0,
    });
    b.site("a", "test", Some(0));
    let v = b.load(input, 0);
    let v = b.multiply_plain(v, w);
    let v = b.rescale(v);
    let squares = b.site("b", "test", Some(0));
    let rotated = b.rotate_hoisted(v, &[1, 2]);
    let sum = b.add(rotated[0], rotated[1]);
    let square = b.multiply(sum, sum);
    let square = b.rescale(square);
    b.check(RangeCheck {
        after: 6,
        register: square,
        site: squares,
        low: -0.9,
        high: 0.8,
        occupied: vec![],
    });
    b.site("c", "test", Some(1));
    let v = b.bootstrap(square, 4, 4, 1.0);
    let v = b.rotate(v, -7);
    let v = b.multiply_scalar(v, 0.5);
    let v = b.rescale(v);
    b.site("d", "test", None);
    b.store(v, y, 0);
    let plan = b.build();
    plan.validate().unwrap();
    plan
}

#[test]
fn leveled_plan_report_matches_hand_computed_values() {
    let plan = leveled_plan();
    let report =
        PlanReport::new(&plan, &CostModel::default_cpu(), &ReportOptions::default()).unwrap();

    // Counts per layer (0: sites a and b; 1: site c; outside layers: the store).
    let layers: Vec<Option<u32>> = report.layers.iter().map(|l| l.layer).collect();
    assert_eq!(layers, [Some(0), Some(1), None]);
    let (l0, l1) = (&report.layers[0].tally, &report.layers[1].tally);
    assert_eq!(
        (l0.rotations, l0.hoisted_groups, l0.key_switches),
        (2, 1, 3)
    );
    assert_eq!((l0.ct_ct_mults, l0.ct_pt_mults, l0.rescales), (1, 1, 2));
    assert_eq!(
        (
            l1.rotations,
            l1.key_switches,
            l1.scalar_mults,
            l1.bootstraps
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(report.total.tally.operations(), 13);

    // Depth in rescales: two in layer 0; the bootstrap resets it, one more in layer 1.
    assert_eq!(
        (report.layers[0].depth, report.layers[0].cumulative_depth),
        (2, 2)
    );
    assert_eq!(
        (report.layers[1].depth, report.layers[1].cumulative_depth),
        (1, 1)
    );
    assert_eq!(report.total.depth, 2);

    // Operating levels: load, mul.p, rescale at 2; rot.h, add, mul, rescale at 1; boot at 0;
    // rot, mul.s, rescale at 4; store at 3.
    let profile: Vec<(u32, usize)> = report
        .total
        .level_profile
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| (c.level, c.instructions))
        .collect();
    assert_eq!(profile, [(4, 3), (3, 1), (2, 3), (1, 4), (0, 1)]);

    // Keys: dnum · 2 · (level + 1 + special primes) · N · 8 bytes at the highest level of use.
    // Step 1 is used at level 1 (hoisted) and level 4 (`rot` by −7 ≡ 1); step 2 at level 1;
    // the relinearization key at level 1.
    let key = |level: u64| 3 * 2 * (level + 1 + 2) * 4096 * 8;
    let steps: Vec<(i32, usize, Option<u32>, Option<u64>)> = report
        .keys
        .rotations
        .iter()
        .map(|k| (k.step, k.uses, k.level, k.bytes))
        .collect();
    assert_eq!(
        steps,
        [(1, 2, Some(4), Some(key(4))), (2, 1, Some(1), Some(key(1)))]
    );
    let relin = report.keys.relinearization.as_ref().unwrap();
    assert_eq!(
        (relin.uses, relin.level, relin.bytes),
        (1, Some(1), Some(key(1)))
    );
    assert_eq!(report.keys.total_bytes, Some(key(4) + 2 * key(1)));
    assert_eq!(report.keys.total_bytes, Some(2_949_120));

    // The bootstrap: site c, 4 slots, the range checked on its input, level 0 → 4.
    let [boot] = report.bootstraps.as_slice() else {
        panic!("{:?}", report.bootstraps)
    };
    assert_eq!(
        (boot.instruction, boot.site.as_str(), boot.layer, boot.slots),
        (7, "c", Some(1), 4)
    );
    assert_eq!(boot.input_range, Some([-0.9, 0.8]));
    assert_eq!(
        (boot.input_level, boot.output_level, boot.levels_restored),
        (Some(0), 4, Some(4))
    );
    // Below the smallest slot count measured: the 4096-slot figure.
    assert_eq!(boot.latency_ms, 21674.51);

    // Peak memory: 2 · (level + 1) · N · 8 bytes per ciphertext; the most bytes are live at the
    // rotation after the bootstrap (two ciphertexts at level 4); the most ciphertexts at the
    // hoisted group (its input and two results, level 1).
    let ct = |level: u64| 2 * (level + 1) * 4096 * 8;
    assert_eq!(report.memory.peak_bytes, Some(2 * ct(4)));
    assert_eq!(report.memory.peak_instruction, 8);
    assert_eq!(report.memory.peak_site, "c");
    assert_eq!(report.memory.peak_ciphertexts, 3);

    // Latency from the default model's figures (ms at 23 limbs; proportional to limbs, `mul`
    // fitted between 23 and 8 limbs).
    let limbs = |ms_at_top: f64, level: u32| ms_at_top / 23.0 * f64::from(level + 1);
    let mul_per_limb = (385.25 - 182.98) / 15.0;
    let mul = |level: u32| 385.25 - mul_per_limb * 23.0 + mul_per_limb * f64::from(level + 1);
    let layer0 = limbs(31.39 + 34.82, 2)
        + limbs(67.1, 2)
        + limbs(167.0, 1)
        + 2.0 * limbs(192.0, 1)
        + limbs(25.33, 1)
        + mul(1)
        + limbs(67.1, 1);
    let layer1 = 21674.51 + limbs(369.01, 4) + limbs(12.7, 4) + limbs(67.1, 4);
    assert!(close(l0.latency_ms, layer0), "{} {layer0}", l0.latency_ms);
    assert!(close(l1.latency_ms, layer1), "{} {layer1}", l1.latency_ms);
    assert_eq!(report.layers[2].tally.latency_ms, 0.0);
    assert!(close(report.total.tally.latency_ms, layer0 + layer1));
    let per_level: f64 = report
        .total
        .level_profile
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.latency_ms)
        .sum();
    assert!(close(per_level, layer0 + layer1));

    // Weights and the decode step (3 past rows; one state ciphertext at level 3).
    assert_eq!(
        (
            report.weights.tensors,
            report.weights.bytes,
            report.weights.plaintexts
        ),
        (1, 16, 1)
    );
    let decode = report.decode.as_ref().unwrap();
    assert_eq!(
        (
            decode.states,
            decode.cache_length,
            decode.state_ciphertexts,
            decode.state_bytes
        ),
        (1, 3, 1, Some(ct(3)))
    );
    assert!(close(decode.latency_ms_per_token, layer0 + layer1));
    // The cost model is for N = 2^16, the plan for 2^12.
    assert!(
        report.warnings[0].contains("N = 2^16"),
        "{:?}",
        report.warnings
    );

    insta::assert_snapshot!("hand_leveled_report", report.text());
    insta::assert_snapshot!("hand_leveled_report_json", report.json());
    let back: PlanReport = serde_json::from_str(&report.json()).unwrap();
    assert_eq!(back, report);
    insta::assert_snapshot!("hand_leveled_dot", dot(&plan));
}

#[test]
fn unleveled_plans_are_costed_at_the_assumed_level() {
    let mut plan = leveled_plan();
    plan.parameters = None;
    // Without rescales the multiplications count the depth (as the `sim` backend does).
    plan.instructions.retain(|i| {
        !matches!(
            i,
            Instruction::Rescale { .. } | Instruction::Bootstrap { .. }
        )
    });
    let rename = |r: &mut u32| {
        *r = match *r {
            2 => 1,
            7 => 6,
            8 => 6,
            11 => 10,
            r => r,
        }
    };
    for i in &mut plan.instructions {
        match i {
            Instruction::RotateHoisted { a, .. }
            | Instruction::Rotate { a, .. }
            | Instruction::MultiplyScalar { a, .. } => rename(&mut a.0),
            Instruction::Store { src, .. } => rename(&mut src.0),
            _ => {}
        }
    }
    plan.instruction_sites = vec![0, 0, 1, 1, 1, 2, 2, 3];
    // The retained instructions leave gaps in the register numbers: number them again in
    // order of first use.
    let mut numbers: std::collections::HashMap<u32, u32> = std::collections::HashMap::new();
    for i in &plan.instructions {
        let (reads, writes) = i.registers();
        for r in reads.into_iter().chain(writes) {
            let next = numbers.len() as u32;
            numbers.entry(r).or_insert(next);
        }
    }
    for i in &mut plan.instructions {
        i.rename_registers(&mut |r| numbers[&r], &mut |r| numbers[&r]);
    }
    plan.registers = numbers.len() as u32;
    plan.validate().unwrap();
    let cost = CostModel::default_cpu();
    let at = |level| {
        PlanReport::new(
            &plan,
            &cost,
            &ReportOptions {
                assumed_level: level,
            },
        )
        .unwrap()
    };
    let report = at(0);
    // mul.p, then mul; mul.s in layer 1 on layer 0's value.
    assert_eq!(report.total.depth, 3);
    assert_eq!(
        (report.layers[1].depth, report.layers[1].cumulative_depth),
        (1, 3)
    );
    assert_eq!(report.latency.assumed_level, Some(0));
    assert!(report.total.level_profile.is_none());
    assert_eq!(report.keys.total_bytes, None);
    assert_eq!(report.keys.rotations[0].bytes, None);
    assert_eq!(report.memory.peak_bytes, None);
    assert_eq!(report.decode.as_ref().unwrap().state_bytes, None);
    let expected = |level: u32| -> f64 {
        plan.instructions
            .iter()
            .map(|i| cachemir_compiler::report::instruction_latency(&cost, i, level))
            .sum()
    };
    assert!(close(report.total.tally.latency_ms, expected(0)));
    assert!(close(at(7).total.tally.latency_ms, expected(7)));
    assert!(at(7).total.tally.latency_ms > report.total.tally.latency_ms);
}

/// Compiles a shared model with the `cachemirc` binary to `output` (a plan for `.plan`); returns
/// its path.
fn compile(dir: &Path, plan: &Path, model: &str, extra: &[&str]) -> String {
    let onnx = dir.join(format!("{model}.onnx"));
    let calibration = dir.join(model).join("calib.json");
    let sample = dir.join(model).join("case0.json");
    let mut args = vec![
        "compile",
        onnx.to_str().unwrap(),
        "--calibration",
        calibration.to_str().unwrap(),
        "--sample",
        sample.to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let out = cachemirc(&args);
    assert!(
        out.status.success(),
        "cachemirc {}\n{}",
        args.join(" "),
        text(&out.stderr)
    );
    plan.to_str().unwrap().to_string()
}

/// What every report must agree with: the plan's own counts, per-layer sums equal to the total,
/// the level-free fields of an unleveled plan.
fn check_against_plan(plan: &Plan, report: &PlanReport) {
    let counts = plan.counts();
    let get = |m: &str| counts.get(m).copied().unwrap_or(0);
    let t = &report.total.tally;
    assert_eq!(t.rotations, get("rot") + get("rot.h"));
    assert_eq!(t.relinearizations, get("mul") + get("relin"));
    assert_eq!(
        t.key_switches,
        get("rot") + get("rot.h") + t.relinearizations
    );
    assert_eq!(
        (t.ct_ct_mults, t.ct_pt_mults, t.scalar_mults),
        (get("mul") + get("mul.nr"), get("mul.p"), get("mul.s"))
    );
    let by_mnemonic: BTreeMap<String, usize> =
        counts.iter().map(|(m, n)| (m.to_string(), *n)).collect();
    assert_eq!(t.counts, by_mnemonic);
    let mut sum = cachemir_compiler::report::Tally::default();
    for layer in &report.layers {
        for (m, n) in &layer.tally.counts {
            *sum.counts.entry(m.clone()).or_default() += n;
        }
        sum.rotations += layer.tally.rotations;
        sum.key_switches += layer.tally.key_switches;
        sum.ct_ct_mults += layer.tally.ct_ct_mults;
        sum.ct_pt_mults += layer.tally.ct_pt_mults;
        sum.latency_ms += layer.tally.latency_ms;
        assert!(layer.depth <= layer.cumulative_depth);
        assert!(layer.cumulative_depth <= report.total.depth);
    }
    assert_eq!(sum.counts, t.counts);
    assert_eq!(
        (
            sum.rotations,
            sum.key_switches,
            sum.ct_ct_mults,
            sum.ct_pt_mults
        ),
        (t.rotations, t.key_switches, t.ct_ct_mults, t.ct_pt_mults)
    );
    assert!(close(sum.latency_ms, t.latency_ms));
    assert_eq!(
        report.total.depth,
        report
            .layers
            .iter()
            .map(|l| l.cumulative_depth)
            .max()
            .unwrap()
    );
    // The loads come first: every ciphertext of the largest input is live at once.
    let largest = plan
        .inputs
        .iter()
        .map(|i| i.layout.ciphertexts())
        .max()
        .unwrap();
    assert!(report.memory.peak_ciphertexts >= largest);
    assert!(report.memory.peak_ciphertexts <= plan.registers as usize);
    assert_eq!(report.keys.rotation_steps, plan.rotations.len());
    assert!(report.keys.rotations.iter().all(|k| k.uses > 0));
    let weight_elements: usize = plan
        .weight_shapes
        .values()
        .map(|s| s.iter().product::<usize>())
        .sum();
    assert_eq!(report.weights.bytes, 4 * weight_elements as u64);
    assert_eq!(report.weights.plaintexts, plan.plaintexts.len());
    assert!(report.bootstraps.is_empty() && plan.parameters.is_none());
}

fn plan_report(path: &str) -> (Plan, PlanReport) {
    let plan = Plan::from_bytes(&std::fs::read(path).unwrap()).unwrap();
    let report =
        PlanReport::new(&plan, &CostModel::default_cpu(), &ReportOptions::default()).unwrap();
    check_against_plan(&plan, &report);
    (plan, report)
}

#[test]
fn tiny_llama_report() {
    let Some(dir) = models_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let model = "tiny_llama_decode_step_p15_ts17";
    let path = compile(
        &dir,
        &scratch.path().join("llama.plan"),
        model,
        &[
            "--encrypt-from",
            "/model/model/embed_tokens/Gather_output_0",
        ],
    );
    let (plan, report) = plan_report(&path);
    // Two decoder layers and the head; the KV cache of 15 past positions.
    let layers: Vec<Option<u32>> = report.layers.iter().map(|l| l.layer).collect();
    assert_eq!(layers, [Some(0), Some(1), None]);
    let decode = report.decode.as_ref().unwrap();
    assert_eq!(
        (decode.states, decode.cache_length),
        (plan.states.len(), 15)
    );
    insta::assert_snapshot!("tiny_llama_report", report.text());

    // The binary prints the same report, and the same as JSON.
    let out = cachemirc(&["report", &path]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), report.text());
    let out = cachemirc(&["report", &path, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: PlanReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json, report);

    // `--cost-model FILE`: a model with every figure doubled doubles the estimate.
    let mut doubled = CostModel::default_cpu();
    for c in doubled.instructions.values_mut() {
        c.fixed_ms *= 2.0;
        c.per_limb_ms *= 2.0;
    }
    let cost_path = scratch.path().join("cost.json");
    std::fs::write(&cost_path, serde_json::to_string(&doubled).unwrap()).unwrap();
    let out = cachemirc(&[
        "report",
        &path,
        "--json",
        "--cost-model",
        cost_path.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let json: PlanReport = serde_json::from_slice(&out.stdout).unwrap();
    assert!(close(
        json.total.tally.latency_ms,
        2.0 * report.total.tally.latency_ms
    ));

    // `dot -o FILE`: one node per site with instructions, inputs and outputs as ellipses.
    let dot_path = scratch.path().join("llama.dot");
    let out = cachemirc(&["dot", &path, "-o", dot_path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let graph = std::fs::read_to_string(&dot_path).unwrap();
    assert_eq!(graph, dot(&plan));
    assert!(graph.starts_with("digraph") && graph.ends_with("}\n"));
    let sites: std::collections::BTreeSet<u32> = plan.instruction_sites.iter().copied().collect();
    let boxes = graph
        .lines()
        .filter(|l| l.trim_start().starts_with('s') && !l.contains("->"))
        .filter(|l| l.contains("[label="))
        .count();
    assert_eq!(boxes, sites.len());
    assert!(graph.contains("subgraph cluster_layer1"));
    assert!(graph.contains("KV cache"));
}

/// The tiny Llama plan through the level pass (N16BootFull, bounds from the calibrated graph
/// `compile --emit json` writes): the report of a real leveled plan agrees with its instructions
/// and the level trace. Not snapshotted: the placement is the level pass's to change.
#[test]
fn tiny_llama_leveled_report() {
    use cachemir_compiler::levels::params::by_name;
    use cachemir_compiler::levels::{LevelOptions, assign_levels, calibrated_bound};
    use cachemir_ir::plan::levels::trace;

    let Some(dir) = models_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let model = "tiny_llama_decode_step_p15_ts17";
    let encrypt = [
        "--encrypt-from",
        "/model/model/embed_tokens/Gather_output_0",
    ];
    let path = compile(&dir, &scratch.path().join("llama.plan"), model, &encrypt);
    let graph_path = scratch.path().join("llama.json");
    let mut extra = encrypt.to_vec();
    extra.extend(["--emit", "json"]);
    compile(&dir, &graph_path, model, &extra);
    let graph: cachemir_ir::Graph =
        serde_json::from_str(&std::fs::read_to_string(&graph_path).unwrap()).unwrap();
    let unleveled = Plan::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    let bound = |site: &str| calibrated_bound(&graph, site);
    let options = LevelOptions::new(by_name("N16BootFull").unwrap());
    let plan = assign_levels(&unleveled, &bound, &options).unwrap().plan;
    let parameters = plan.parameters.clone().unwrap();
    let cost = CostModel::default_cpu();
    let report = PlanReport::new(&plan, &cost, &ReportOptions::default()).unwrap();
    eprintln!("{}", report.text());
    let levels = trace(&plan).unwrap().unwrap();

    let counts = plan.counts();
    let get = |m: &str| counts.get(m).copied().unwrap_or(0);
    let t = &report.total.tally;
    assert_eq!(t.rotations, get("rot") + get("rot.h"));
    assert_eq!((t.rescales, t.bootstraps), (get("rescale"), get("boot")));
    assert_eq!(report.bootstraps.len(), get("boot"));
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    // The level profile covers every instruction; its milliseconds are the total's.
    let profile = report.total.level_profile.as_ref().unwrap();
    assert_eq!(
        profile.iter().map(|c| c.instructions).sum::<usize>(),
        plan.instructions.len()
    );
    assert!(close(
        profile.iter().map(|c| c.latency_ms).sum(),
        t.latency_ms
    ));
    assert!(profile.iter().all(|c| c.level <= parameters.max_level));
    // Depth in rescales never exceeds the levels available.
    assert!(report.total.depth <= parameters.max_level);
    // Every bootstrap returns the parameters' level, from a lower one.
    for b in &report.bootstraps {
        assert_eq!(Some(b.output_level), parameters.bootstrap_level);
        assert_eq!(
            b.levels_restored,
            Some(b.output_level - b.input_level.unwrap())
        );
        assert_eq!(b.latency_ms, cost.bootstrap(b.slots as usize));
    }
    // Key bytes: each key at its highest level of use, summed.
    let keys = &report.keys;
    let mut expected = 0;
    for k in &keys.rotations {
        let level = plan
            .instructions
            .iter()
            .enumerate()
            .filter(|(_, i)| match i {
                Instruction::Rotate { step, .. } => plan.normalise(step.0) == k.step,
                Instruction::RotateHoisted { steps, .. } => {
                    steps.0.iter().any(|&s| plan.normalise(s) == k.step)
                }
                _ => false,
            })
            .filter_map(|(j, _)| levels.operating[j])
            .max();
        assert_eq!(k.level, level, "step {}", k.step);
        expected += parameters.switching_key_bytes(level.unwrap());
    }
    expected += keys.relinearization.as_ref().unwrap().bytes.unwrap();
    assert_eq!(keys.total_bytes, Some(expected));
    // Peak memory holds at least the inputs' ciphertexts at their levels.
    let inputs: u64 = plan
        .inputs
        .iter()
        .map(|i| i.layout.ciphertexts() as u64 * parameters.ciphertext_bytes(i.level.unwrap()))
        .max()
        .unwrap();
    assert!(report.memory.peak_bytes.unwrap() >= inputs);
    let decode = report.decode.as_ref().unwrap();
    assert_eq!(decode.cache_length, 15);
    assert!(decode.state_bytes.unwrap() > 0);
}

#[test]
fn one_minilm_layer_report() {
    let Some(dir) = models_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    // The embeddings and the first encoder layer (the whole model takes ~25 s to compile in
    // a debug build).
    let path = compile(
        &dir,
        &scratch.path().join("minilm_layer0.plan"),
        "minilm_l6_dyn_ts17",
        &[
            "--encrypt-from",
            "/bert/embeddings/LayerNorm/LayerNormalization_output_0",
            "--outputs",
            "/bert/encoder/layer.0/output/LayerNorm/LayerNormalization_output_0",
        ],
    );
    let (_, report) = plan_report(&path);
    assert!(report.decode.is_none());
    assert_eq!(report.layers[0].layer, Some(0));
    insta::assert_snapshot!("minilm_layer0_report", report.text());
}

#[test]
fn report_and_dot_of_bad_files_exit_2() {
    let scratch = tempfile::tempdir().unwrap();
    let missing = scratch.path().join("missing.plan");
    let garbage = scratch.path().join("garbage.plan");
    std::fs::write(&garbage, b"not a plan").unwrap();
    for command in ["report", "dot"] {
        for (path, message) in [(&missing, "missing.plan"), (&garbage, "bad magic")] {
            let out = cachemirc(&[command, path.to_str().unwrap()]);
            assert_eq!(out.status.code(), Some(2), "{command}");
            assert!(text(&out.stderr).contains(message), "{}", text(&out.stderr));
        }
    }
    // A plan file is fine; a cost model that does not parse is the user's error too.
    let plan = scratch.path().join("hand.plan");
    std::fs::write(&plan, leveled_plan().to_bytes().unwrap()).unwrap();
    let cost = scratch.path().join("cost.json");
    std::fs::write(&cost, "{").unwrap();
    let out = cachemirc(&[
        "report",
        plan.to_str().unwrap(),
        "--cost-model",
        cost.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cost model"),
        "{}",
        text(&out.stderr)
    );
    // A leveled plan that breaks its level rules names the instruction.
    let mut broken = leveled_plan();
    broken.outputs[0].level = Some(2);
    std::fs::write(&plan, broken.to_bytes().unwrap()).unwrap();
    let out = cachemirc(&["report", plan.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("instruction 11"),
        "{}",
        text(&out.stderr)
    );
    // The JSON form of a plan is read as well.
    std::fs::write(&plan, serde_json::to_vec(&leveled_plan()).unwrap()).unwrap();
    let out = cachemirc(&["report", plan.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
