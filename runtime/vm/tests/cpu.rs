//! The `cpu` backend against `sim` on small hand-built leveled plans at ToyBootN12 (N = 2^12,
//! insecure, tests only): every instruction, across the whole modulus chain (45-, 55- and
//! 60-bit primes), including `level.down` at both scale degrees, hoisted rotations (bit-identical
//! to single rotations, one key switch per step), full-slot and sparse-slot bootstrapping with
//! the plan's `scale` folded in, and precision in bits (−log2 of the largest absolute error)
//! against `sim`'s exact values. Then the keys and files: what a plan needs, refusals (toy sets
//! without permission, keys of another plan or parameter set), and round trips of the secret
//! key (mode 0600), the evaluation keys and the ciphertext file.

use cachemir_ir::layout::{Layout, Run};
use cachemir_ir::plan::parameters::by_name;
use cachemir_ir::plan::{
    Ciphertexts, Dst, Dsts, Instruction, Io, Level, PLAN_FORMAT_VERSION, Part, Plain, Plaintext,
    Plan, Scalar, Site, Slots, Src, Step, Steps, TensorRef, levels,
};
use cachemir_vm::cpu::bundle::{BundleEntry, Role};
use cachemir_vm::{
    Backend, CiphertextBundle, Client, ClientKeys, CpuBackend, CpuError, CpuOptions, CpuParameters,
    EvaluationKeys, Insecure, KeyRequirements, run_cleartext, sim,
};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Instructions over registers, for a plan with one input `x` and one output per `store`.
struct Builder {
    slots: usize,
    instructions: Vec<Instruction>,
    next: u32,
    outputs: u32,
}

impl Builder {
    /// `load r0` of the input.
    fn new(slots: usize) -> (Self, u32) {
        let mut b = Builder {
            slots,
            instructions: vec![],
            next: 0,
            outputs: 0,
        };
        let x = b.op(|dst| Instruction::Load {
            dst,
            input: Io(0),
            part: Part(0),
        });
        (b, x)
    }

    /// Appends the instruction writing a fresh register; returns it.
    fn op(&mut self, f: impl FnOnce(Dst) -> Instruction) -> u32 {
        let r = self.next;
        self.next += 1;
        self.instructions.push(f(Dst(r)));
        r
    }

    fn hoisted(&mut self, a: u32, steps: &[i32]) -> Vec<u32> {
        let dsts: Vec<u32> = (0..steps.len() as u32).map(|i| self.next + i).collect();
        self.next += steps.len() as u32;
        self.instructions.push(Instruction::RotateHoisted {
            dsts: Dsts(dsts.clone()),
            a: Src(a),
            steps: Steps(steps.to_vec()),
        });
        dsts
    }

    fn store(&mut self, r: u32) {
        self.instructions.push(Instruction::Store {
            src: Src(r),
            output: Io(self.outputs),
            part: Part(0),
        });
        self.outputs += 1;
    }

    /// The plan at ToyBootN12: input at `input_level`, each output declared at the level its
    /// value reaches (from the level trace), the weights `w0`, `w1` over all slots.
    fn plan(self, input_level: u32) -> Plan {
        let layout = Layout::row_major(&[self.slots], self.slots);
        let io = |name: String, level: Option<u32>| Ciphertexts {
            name,
            layout: layout.clone(),
            level,
        };
        let mut rotations: Vec<i32> = self
            .instructions
            .iter()
            .flat_map(|i| match i {
                Instruction::Rotate { step, .. } => vec![step.0],
                Instruction::RotateHoisted { steps, .. } => steps.0.clone(),
                _ => vec![],
            })
            .map(|s| s.rem_euclid(self.slots as i32))
            .collect();
        rotations.sort_unstable();
        rotations.dedup();
        let gather = |w: &str| Plaintext::Gather {
            tensor: TensorRef::Weight(w.into()),
            runs: vec![Run {
                ciphertext: 0,
                slot: 0,
                count: self.slots as u32,
                element: 0,
                step: 1,
            }],
            scale: 1.0,
        };
        let n = self.instructions.len();
        let mut plan = Plan {
            version: PLAN_FORMAT_VERSION,
            name: "cpu-test".into(),
            slots: self.slots,
            parameters: by_name("ToyBootN12"),
            weights: "w.safetensors".into(),
            weight_shapes: BTreeMap::from([
                ("w0".into(), vec![self.slots]),
                ("w1".into(), vec![self.slots]),
            ]),
            client_program: String::new(),
            public_program: String::new(),
            public_inputs: vec![],
            inputs: vec![io("x".into(), Some(input_level))],
            outputs: (0..self.outputs)
                .map(|o| io(format!("y{o}"), Some(0)))
                .collect(),
            states: vec![],
            generation: None,
            plaintexts: vec![gather("w0"), gather("w1")],
            rotations,
            registers: self.next,
            sites: (0..n)
                .map(|k| Site {
                    name: format!("site{k}"),
                    source: "test".into(),
                    layer: None,
                })
                .collect(),
            instruction_sites: (0..n as u32).collect(),
            instructions: self.instructions,
            checks: vec![],
        };
        // Declare each output at the level the trace finds it stored at.
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
}

fn mul_p(b: &mut Builder, a: u32, p: u32) -> u32 {
    b.op(|dst| Instruction::MultiplyPlain {
        dst,
        a: Src(a),
        plaintext: Plain(p),
    })
}

fn rescale(b: &mut Builder, a: u32) -> u32 {
    b.op(|dst| Instruction::Rescale { dst, a: Src(a) })
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
    let (mut b, x) = Builder::new(slots);
    // Level 25 → 24: mul.p, rescale; a ct-ct product and its rescale.
    let p = mul_p(&mut b, x, 0);
    let p = rescale(&mut b, p);
    b.store(p); // y0
    let x24 = b.op(|dst| Instruction::LevelDown {
        dst,
        a: Src(x),
        level: Level(24),
    });
    b.store(x24); // y1: level.down at degree 1 across a 55-bit prime
    let sq = b.op(|dst| Instruction::Multiply {
        dst,
        a: Src(p),
        b: Src(x24),
    });
    let sq = rescale(&mut b, sq);
    b.store(sq); // y2: level 23
    // add, sub, add.p, sub.p, add.s, neg, mul.s at level 23.
    let x23 = b.op(|dst| Instruction::LevelDown {
        dst,
        a: Src(x),
        level: Level(23),
    });
    let s = b.op(|dst| Instruction::Add {
        dst,
        a: Src(sq),
        b: Src(x23),
    });
    let s = b.op(|dst| Instruction::Sub {
        dst,
        a: Src(s),
        b: Src(x23),
    });
    let s = b.op(|dst| Instruction::AddPlain {
        dst,
        a: Src(s),
        plaintext: Plain(1),
    });
    let s = b.op(|dst| Instruction::SubPlain {
        dst,
        a: Src(s),
        plaintext: Plain(0),
    });
    let s = b.op(|dst| Instruction::AddScalar {
        dst,
        a: Src(s),
        value: Scalar(0.25),
    });
    let s = b.op(|dst| Instruction::Negate { dst, a: Src(s) });
    b.store(s); // y3
    let m = b.op(|dst| Instruction::MultiplyScalar {
        dst,
        a: Src(s),
        value: Scalar(-0.75),
    });
    // level.down at degree 2 (23 → 12), then add.p at Δ², then rescale.
    let m = b.op(|dst| Instruction::LevelDown {
        dst,
        a: Src(m),
        level: Level(12),
    });
    let m = b.op(|dst| Instruction::AddPlain {
        dst,
        a: Src(m),
        plaintext: Plain(1),
    });
    let m = rescale(&mut b, m);
    b.store(m); // y4: level 11
    // Rotations: single, and hoisted (including step 0 and a negative step).
    let r = b.op(|dst| Instruction::Rotate {
        dst,
        a: Src(m),
        step: Step(3),
    });
    b.store(r); // y5
    let hs = b.hoisted(m, &[3, 0, -5, 700]);
    for &h in &hs {
        b.store(h); // y6..y9
    }
    // Down to level 0: a chain of products with the weight at the 45-bit levels.
    let mut v = hs[2];
    for _ in 0..11 {
        let t = mul_p(&mut b, v, 1);
        v = rescale(&mut b, t);
    }
    b.store(v); // y10: level 0
    let plan = b.plan(25);
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
        let (mut b, x) = Builder::new(slots);
        let boot = |b: &mut Builder, a: u32, scale: f64| {
            b.op(|dst| Instruction::Bootstrap {
                dst,
                a: Src(a),
                slots: Slots(slots as u32),
                level: Level(9),
                scale: Scalar(scale),
            })
        };
        // From level 1, after computing down from level 9: scale 3.
        let mut v = b.op(|dst| Instruction::LevelDown {
            dst,
            a: Src(x),
            level: Level(9),
        });
        for _ in 0..8 {
            let t = mul_p(&mut b, v, 0);
            v = rescale(&mut b, t);
        }
        let y = boot(&mut b, v, 3.0);
        b.store(y); // y0 at level 9
        let t = mul_p(&mut b, y, 1);
        let t = rescale(&mut b, t);
        b.store(t); // y1: computing on after the bootstrap
        // From the top of the chain (scale above 2Δ: one discarded level first), scale 0.125.
        let z = boot(&mut b, x, 0.125);
        b.store(z); // y2
        let plan = b.plan(25);
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
    let (mut b, x) = Builder::new(64);
    let r = b.op(|dst| Instruction::Rotate {
        dst,
        a: Src(x),
        step: Step(-1),
    });
    let low = b.op(|dst| Instruction::LevelDown {
        dst,
        a: Src(r),
        level: Level(4),
    });
    let _ = b.hoisted(low, &[63, 2]);
    let sq = b.op(|dst| Instruction::Multiply {
        dst,
        a: Src(low),
        b: Src(low),
    });
    let sq = rescale(&mut b, sq);
    b.store(sq);
    let plan = b.plan(7);
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

    let (mut b, x) = Builder::new(64);
    let r = b.op(|dst| Instruction::Rotate {
        dst,
        a: Src(x),
        step: Step(5),
    });
    b.store(r);
    let plan = b.plan(3);
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
