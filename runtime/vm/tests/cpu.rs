//! The `cpu` backend against `sim` on small hand-built leveled plans at ToyBootN12 (N = 2^12,
//! insecure, tests only): every instruction, across the whole modulus chain (45-, 55- and
//! 60-bit primes), including `level.down` at both scale degrees, hoisted rotations (bit-identical
//! to single rotations, one key switch per step), full-slot and sparse-slot bootstrapping with
//! the plan's `scale` folded in, and precision in bits (−log2 of the largest absolute error)
//! against `sim`'s exact values. Then the keys and files: what a plan needs, refusals (toy sets
//! without permission, keys of another plan or parameter set), and round trips of the secret
//! key (mode 0600), the evaluation keys and the ciphertext file.

use cachemir_ir::layout::Layout;
use cachemir_ir::plan::builder::PlanBuilder;
use cachemir_ir::plan::parameters::by_name;
use cachemir_ir::plan::{Instruction, Plan, Register, Step, TensorRef, levels};
use cachemir_vm::cpu::bundle::{BundleEntry, Role};
use cachemir_vm::{
    Backend, CiphertextBundle, Client, ClientKeys, CpuBackend, CpuError, CpuOptions, CpuParameters,
    EvaluationKeys, Insecure, KeyRequirements, run_cleartext, sim,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// A plan at ToyBootN12 over `slots` slots with the input `x` at `input_level`, loaded into the
/// returned register, and the weights `w0`, `w1` over all slots as plaintexts 0 and 1; outputs
/// are added by [`store`] and declared at their levels by [`finish`].
fn toy_plan(slots: usize, input_level: u32) -> (PlanBuilder, Register) {
    let mut b = PlanBuilder::new("cpu-test", slots);
    b.parameters(by_name("ToyBootN12").unwrap())
        .weights("w.safetensors");
    b.gathered_weight("w0", &[slots]);
    b.gathered_weight("w1", &[slots]);
    let x = b.input("x", &vector(slots), Some(input_level));
    b.site("cpu-test", "test", None);
    let x = b.load(x, 0);
    (b, x)
}

/// A vector filling the `slots` slots of one ciphertext.
fn vector(slots: usize) -> Layout {
    Layout::row_major(&[slots], slots)
}

/// Stores `r` as the next output, `y0`, `y1`, …
fn store(b: &mut PlanBuilder, r: Register) {
    let name = format!("y{}", b.plan().outputs.len());
    let output = b.output(&name, &vector(b.plan().slots), Some(0));
    b.store(r, output, 0);
}

/// The plan, each output declared at the level the trace finds it stored at.
fn finish(b: PlanBuilder) -> Plan {
    let mut plan = b.build();
    loop {
        match levels::trace(&plan) {
            Ok(_) => return plan,
            Err(e) => match e.rule {
                levels::LevelRule::OutputLevel { output, found, .. } => {
                    plan.outputs[output as usize].level = Some(found);
                }
                rule => panic!("test plan breaks the level rules: {rule}"),
            },
        }
    }
}

/// `mul.p` then `rescale`: one level down.
fn multiply_plain_rescaled(b: &mut PlanBuilder, a: Register, plaintext: u32) -> Register {
    let product = b.multiply_plain(a, plaintext);
    b.rescale(product)
}

/// Deterministic values in [−bound, bound].
fn wave(n: usize, seed: f64, bound: f64) -> Vec<f64> {
    (0..n)
        .map(|i| bound * (seed * (i as f64 + 1.0)).sin())
        .collect()
}

fn tensors(slots: usize) -> HashMap<TensorRef, Vec<f64>> {
    HashMap::from([
        (TensorRef::Weight("w0".into()), wave(slots, 0.37, 0.9)),
        (TensorRef::Weight("w1".into()), wave(slots, 1.13, 0.5)),
    ])
}

fn toy() -> CpuParameters {
    CpuParameters::new(&by_name("ToyBootN12").unwrap(), Insecure::Allow).unwrap()
}

/// Keys for `plan` and the backend holding the secret key too.
fn backend(plan: &Plan) -> (CpuBackend, ClientKeys) {
    let start = Instant::now();
    let client = ClientKeys::generate(&toy()).unwrap();
    let requirements = KeyRequirements::for_plan(plan).unwrap();
    let keys = EvaluationKeys::generate(&client, &requirements, &mut |_| {}).unwrap();
    eprintln!(
        "keys for {} rotations, bootstrap slots {:?}: {:.1} MiB in {:.2?}",
        requirements.rotations.len(),
        requirements.bootstrap_slots,
        keys.bytes() as f64 / (1 << 20) as f64,
        start.elapsed()
    );
    let backend = CpuBackend::new(plan, keys, CpuOptions::default())
        .unwrap()
        .with_secret(&client);
    (backend, client)
}

/// Runs `plan` on `cpu` and `sim` from the input `x`; returns the precision in bits of each
/// output (−log2 of the largest absolute error against `sim`), printed.
fn precision(label: &str, plan: &Plan, x: &[f64]) -> (Vec<f64>, CpuBackend) {
    let tensors = tensors(plan.slots);
    let inputs = vec![vec![x.to_vec()]];
    let want = sim::execute(plan, &tensors, &inputs).unwrap();
    let (backend, _) = backend(plan);
    let start = Instant::now();
    let (got, report) = run_cleartext(&backend, plan, &tensors, &inputs).unwrap();
    let bits: Vec<f64> = want
        .iter()
        .zip(&got)
        .map(|(w, g)| {
            let err = w[0]
                .iter()
                .zip(&g[0])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            -err.log2()
        })
        .collect();
    let stats = backend.stats();
    eprintln!(
        "{label}: {} instructions in {:.2?} ({} bootstraps in {:.2?}, {} key switches, {} plaintexts encoded, cache {:?}); precision bits per output {:.1?}",
        report.instructions(),
        start.elapsed(),
        stats.bootstraps,
        stats.bootstrap_time,
        stats.key_switches,
        stats.plaintexts_encoded,
        stats.cache,
        bits
    );
    (bits, backend)
}

/// Every instruction but `boot`, down the whole chain from the top level (60- and 55-bit
/// primes) to level 0, against `sim`.
#[test]
fn every_instruction_matches_sim_down_the_chain() {
    let slots = 2048;
    let (mut b, x) = toy_plan(slots, 25);
    // Level 25 → 24: mul.p, rescale; a ct-ct product and its rescale.
    let p = multiply_plain_rescaled(&mut b, x, 0);
    store(&mut b, p); // y0
    let x24 = b.level_down(x, 24);
    store(&mut b, x24); // y1: level.down at degree 1 across a 55-bit prime
    let sq = b.multiply(p, x24);
    let sq = b.rescale(sq);
    store(&mut b, sq); // y2: level 23
    // add, sub, add.p, sub.p, add.s, neg, mul.s at level 23.
    let x23 = b.level_down(x, 23);
    let s = b.add(sq, x23);
    let s = b.sub(s, x23);
    let s = b.add_plain(s, 1);
    let s = b.sub_plain(s, 0);
    let s = b.add_scalar(s, 0.25);
    let s = b.negate(s);
    store(&mut b, s); // y3
    let m = b.multiply_scalar(s, -0.75);
    // level.down at degree 2 (23 → 12), then add.p at Δ², then rescale.
    let m = b.level_down(m, 12);
    let m = b.add_plain(m, 1);
    let m = b.rescale(m);
    store(&mut b, m); // y4: level 11
    // Rotations: single, and hoisted (including step 0 and a negative step).
    let r = b.rotate(m, 3);
    store(&mut b, r); // y5
    let hs = b.rotate_hoisted(m, &[3, 0, -5, 700]);
    for &h in &hs {
        store(&mut b, h); // y6..y9
    }
    // Down to level 0: a chain of products with the weight at the 45-bit levels.
    let mut v = hs[2];
    for _ in 0..11 {
        v = multiply_plain_rescaled(&mut b, v, 1);
    }
    store(&mut b, v); // y10: level 0
    let plan = finish(b);
    assert_eq!(plan.outputs[10].level, Some(0));
    let x = wave(slots, 0.71, 1.0);
    let (bits, backend) = precision("ops", &plan, &x);
    for (o, &b) in bits.iter().enumerate() {
        assert!(b >= 25.0, "output y{o}: {b:.1} bits");
    }
    // The hoisted rotation by 3 is the single rotation by 3, bit for bit (one decomposition
    // shared by the group: 3 key switches for its 3 nonzero steps).
    let tensors = tensors(slots);
    let (got, _) = run_cleartext(&backend, &plan, &tensors, &[vec![x]]).unwrap();
    assert_eq!(got[5], got[6]);
    let key_switches_per_run = 1 + 1 + 3;
    assert_eq!(backend.stats().key_switches, 2 * key_switches_per_run);
}

/// `boot` at full slots (2048 = N/2) and sparse slots (64), with the plan's `scale` folded in
/// (no level: the output is at the bootstrap level and the computation continues from there),
/// from inputs at low and high levels.
#[test]
fn bootstrap_with_scale_matches_sim_full_and_sparse() {
    for slots in [2048usize, 64] {
        let (mut b, x) = toy_plan(slots, 25);
        // From level 1, after computing down from level 9: scale 3.
        let mut v = b.level_down(x, 9);
        for _ in 0..8 {
            v = multiply_plain_rescaled(&mut b, v, 0);
        }
        let y = b.bootstrap(v, slots as u32, 9, 3.0);
        store(&mut b, y); // y0 at level 9
        let t = multiply_plain_rescaled(&mut b, y, 1);
        store(&mut b, t); // y1: computing on after the bootstrap
        // From the top of the chain (scale above 2Δ: one discarded level first), scale 0.125.
        let z = b.bootstrap(x, slots as u32, 9, 0.125);
        store(&mut b, z); // y2
        let plan = finish(b);
        let x = wave(slots, 0.53, 0.95);
        let (bits, backend) = precision(&format!("boot {slots} slots"), &plan, &x);
        assert_eq!(backend.stats().bootstraps, 2);
        for (o, &b) in bits.iter().enumerate() {
            assert!(b >= 15.0, "{slots} slots: output y{o}: {b:.1} bits");
        }
    }
}

/// What a plan needs: the relinearization key at the highest ct-ct product, each rotation at the
/// highest level it is used, one bootstrapping key set per slot count.
#[test]
fn requirements_follow_the_level_trace() {
    let (mut b, x) = toy_plan(64, 7);
    let r = b.rotate(x, -1);
    let low = b.level_down(r, 4);
    let _ = b.rotate_hoisted(low, &[63, 2]);
    let sq = b.multiply(low, low);
    let sq = b.rescale(sq);
    store(&mut b, sq);
    let plan = finish(b);
    let req = KeyRequirements::for_plan(&plan).unwrap();
    assert_eq!(req.relinearization, Some(4));
    assert_eq!(req.rotations, BTreeMap::from([(63, 7), (2, 4)]));
    assert!(req.bootstrap_slots.is_empty());
}

/// Toy sets need permission; keys must be of the plan's parameters and cover the plan; the
/// secret key file is private; keys and ciphertext files round-trip and are bound to their
/// parameters and plan.
#[test]
fn keys_and_files_are_checked() {
    let toy_params = by_name("ToyBootN12").unwrap();
    let err = CpuParameters::new(&toy_params, Insecure::Refuse).unwrap_err();
    assert!(err.to_string().contains("--insecure"), "{err}");

    let (mut b, x) = toy_plan(64, 3);
    let r = b.rotate(x, 5);
    store(&mut b, r);
    let plan = finish(b);
    let params = toy();
    let client = ClientKeys::generate(&params).unwrap();
    let req = KeyRequirements::for_plan(&plan).unwrap();
    let keys = EvaluationKeys::generate(&client, &req, &mut |_| {}).unwrap();

    // Keys of another plan (rotation 6 instead of 5) are refused, naming what is missing.
    let mut other = plan.clone();
    if let Instruction::Rotate { step, .. } = &mut other.instructions[1] {
        *step = Step(6);
    }
    other.rotations = vec![6];
    let err = CpuBackend::new(&other, keys.clone(), CpuOptions::default()).unwrap_err();
    assert!(matches!(err, CpuError::MissingKeys(_)), "{err}");
    assert!(err.to_string().contains("rotation 6"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let sk_path = dir.path().join("secret.key");
    client.write(&sk_path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sk_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let client2 = ClientKeys::read(&sk_path, &params, "the plan").unwrap();
    let (hash, bytes) = keys.write_dir(&dir.path().join("eval")).unwrap();
    assert!(bytes > 0);
    let (keys2, hash2) =
        EvaluationKeys::read_dir(&dir.path().join("eval"), &params, "the plan").unwrap();
    assert_eq!(hash, hash2);

    // Server with the keys read back, client with the secret key read back.
    let server = CpuBackend::new(&plan, keys2, CpuOptions::default()).unwrap();
    let client_side = CpuBackend::client(&plan, &client2, CpuOptions::default()).unwrap();
    let x = wave(64, 0.3, 1.0);
    let ct = client_side.encrypt_at(&x, Some(3)).unwrap();
    let bundle = CiphertextBundle {
        plan: plan.content_hash().unwrap(),
        entries: vec![BundleEntry {
            name: "x".into(),
            role: Role::Input,
            parts: vec![ct],
        }],
        public: vec![],
    };
    let ct_path = dir.path().join("x.ct");
    bundle.write(&ct_path, &params, 64).unwrap();
    let back = CiphertextBundle::read(&ct_path, &params, 64, "the plan").unwrap();
    back.check_plan(plan.content_hash().unwrap(), "x.ct")
        .unwrap();
    assert!(
        back.check_plan(other.content_hash().unwrap(), "x.ct")
            .is_err()
    );
    let rotated = server.rotate(&back.entries[0].parts[0], 5).unwrap();
    let got = client_side.decrypt_flooded(&rotated, None).unwrap();
    let err = (0..64)
        .map(|i| (got[i] - x[(i + 5) % 64]).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-4, "flooded decryption error {err:e}");
    // A ciphertext file read with another slot count or a truncated one is refused.
    assert!(CiphertextBundle::read(&ct_path, &params, 128, "the plan").is_err());
    let bytes = std::fs::read(&ct_path).unwrap();
    assert!(
        CiphertextBundle::from_bytes(&bytes[..bytes.len() / 2], "cut", &params, 64, "p").is_err()
    );
    // The server side cannot decrypt.
    assert!(server.decrypt(&back.entries[0].parts[0]).is_err());
}
