//! The plan decoder on untrusted bytes: thousands of deterministic mutations of a small leveled
//! plan that uses every opcode, run through the fuzz body (`plan::fuzz::decode_untrusted`, also
//! the `plan_decode` fuzz target's body), so that CI catches a panic in the decoder, validator
//! or level trace without `cargo fuzz`.

use cachemir_ir::layout::{Layout, Run};
use cachemir_ir::plan::builder::PlanBuilder;
use cachemir_ir::plan::fuzz::{Outcome, decode_untrusted};
use cachemir_ir::plan::levels::trace;
use cachemir_ir::plan::{Instruction as I, Parameters, Plaintext, Plan, RangeCheck, TensorRef};
use std::collections::BTreeMap;

const SLOTS: usize = 8;

/// A leveled decode-step plan with every opcode, every plaintext kind, a KV-cache state and a
/// range check; valid and consistent in levels.
fn small_plan() -> Plan {
    let vector = Layout::row_major(&[4], SLOTS);
    let run = Run {
        ciphertext: 0,
        slot: 0,
        count: 4,
        element: 0,
        step: 1,
    };
    let w = || TensorRef::Weight("w".into());
    let mut b = PlanBuilder::new("small", SLOTS);
    b.parameters(Parameters {
        name: "Small".into(),
        log_n: 4,
        log_scale: 40,
        max_level: 12,
        bootstrap_level: Some(9),
        special_primes: 2,
        dnum: 2,
        toy: true,
    })
    .weights("small.safetensors")
    .weight("w", &[4, 4])
    .public_input("position")
    .state("past", "present");
    let (x, past) = (
        b.input("x", &vector, Some(3)),
        b.input("past", &vector, Some(3)),
    );
    let (y, present) = (
        b.output("y", &vector, Some(2)),
        b.output("present", &vector, Some(3)),
    );
    let gather = b.plaintext(Plaintext::Gather {
        tensor: w(),
        runs: vec![run],
        scale: 0.5,
    });
    let fill = b.plaintext(Plaintext::Fill {
        runs: vec![run],
        value: 1.0,
    });
    let diagonal = b.plaintext(Plaintext::Diagonal {
        weight: w(),
        rows: 4,
        columns: 4,
        period: 4,
        diagonal: 1,
        rotation: 2,
    });
    let interleaved = b.plaintext(Plaintext::InterleavedDiagonal {
        weight: w(),
        rows: 4,
        columns: 4,
        column_map: vec![0, 1, 2, 3],
        period: 4,
        input_chunk: 0,
        output_chunk: 0,
        diagonal: 1,
        rotation: 0,
    });

    let attention = b.site("attention", "node_3", Some(0));
    let x = b.load(x, 0);
    let past = b.load(past, 0);
    let sum = b.add(x, past);
    let difference = b.sub(sum, x);
    let product = b.multiply(difference, past);
    let lazy = b.multiply_no_relinearize(difference, past);
    let product = b.add(product, lazy);
    let product = b.relinearize(product);
    let product = b.rescale(product);
    let weighted = b.multiply_plain(product, gather);
    let mut v = b.rescale(weighted);
    v = b.add_plain(v, fill);
    v = b.sub_plain(v, diagonal);
    v = b.add_scalar(v, 0.5);
    let negated = b.negate(v);
    b.check(RangeCheck {
        after: 14,
        register: negated,
        site: attention,
        low: -1.0,
        high: 1.0,
        occupied: vec![run],
    });
    b.site("mlp", "12:5", Some(1));
    let rotated = b.rotate(negated, 1);
    let pair = b.rotate_hoisted(rotated, &[2, -1]);
    let sum = b.add(pair[0], pair[1]);
    let quarter = b.multiply_scalar(sum, 0.25);
    let quarter = b.rescale(quarter);
    let booted = b.bootstrap(quarter, 4, 9, 2.0);
    let low = b.level_down(booted, 2);
    b.free(x);
    b.store(low, y, 0);
    let state = b.multiply_plain(booted, interleaved);
    let state = b.rescale(state);
    let state = b.level_down(state, 3);
    b.store(state, present, 0);
    b.build()
}

/// SplitMix64 (Steele, Lea, Flood, OOPSLA 2014): a fixed seed gives the same mutants on every
/// machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One to three mutations of the kinds a fuzzer makes: bit flips, interesting bytes, large
/// varints, truncation, deletion, insertion and duplication of ranges.
fn mutate(original: &[u8], rng: &mut SplitMix) -> Vec<u8> {
    let mut bytes = original.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = bytes.len().max(1);
        let at = rng.below(len);
        match rng.below(7) {
            0 => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << rng.below(8);
                }
            }
            1 => {
                if let Some(b) = bytes.get_mut(at) {
                    *b = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.below(5)];
                }
            }
            2 => {
                // A large or maximal varint in place of whatever was there.
                let varint: &[u8] = [
                    &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                    &[0x80, 0x80, 0x80, 0x80, 0x08],
                    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                ][rng.below(3)];
                for (k, v) in varint.iter().enumerate() {
                    if let Some(b) = bytes.get_mut(at + k) {
                        *b = *v;
                    }
                }
            }
            3 => bytes.truncate(at),
            4 => {
                let end = (at + 1 + rng.below(16)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            5 => {
                let insert: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                let at = at.min(bytes.len());
                bytes.splice(at..at, insert);
            }
            _ => {
                let from = rng.below(len);
                let end = (from + 1 + rng.below(32)).min(bytes.len());
                let chunk = bytes.get(from..end).unwrap_or_default().to_vec();
                let at = at.min(bytes.len());
                bytes.splice(at..at, chunk);
            }
        }
    }
    bytes
}

#[test]
fn the_small_plan_is_valid_and_leveled() {
    let plan = small_plan();
    plan.validate().unwrap();
    let t = trace(&plan).unwrap().unwrap();
    assert_eq!(t.operating[20], Some(0)); // the bootstrap's input is at level 0
    assert_eq!(
        decode_untrusted(&plan.to_bytes().unwrap()),
        Outcome::Accepted
    );
    let mut mnemonics: Vec<&str> = plan.instructions.iter().map(I::mnemonic).collect();
    mnemonics.sort_unstable();
    mnemonics.dedup();
    assert_eq!(mnemonics.len(), I::MNEMONICS.len(), "every opcode is used");
}

#[test]
fn mutated_plans_are_rejected_or_decoded_without_panic() {
    let original = small_plan().to_bytes().unwrap();
    let mut rng = SplitMix(0x00C0_FFEE);
    let mut outcomes = BTreeMap::new();
    for _ in 0..4000 {
        let mutant = mutate(&original, &mut rng);
        let outcome = decode_untrusted(&mutant);
        *outcomes.entry(format!("{outcome:?}")).or_insert(0usize) += 1;
    }
    eprintln!("{outcomes:?}");
    // The mutants reach past the decoder: some decode and validate, some of those break a
    // level rule, and most are rejected.
    let count = |k: &str| outcomes.get(k).copied().unwrap_or(0);
    assert!(count("Accepted") >= 40, "{outcomes:?}");
    assert!(count("LevelError") >= 10, "{outcomes:?}");
    assert!(count("Rejected") >= 2000, "{outcomes:?}");
    // Every truncation is rejected.
    for cut in 0..original.len() {
        assert_eq!(decode_untrusted(&original[..cut]), Outcome::Rejected);
    }
}

#[test]
fn hostile_sizes_are_typed_errors_not_allocations_or_panics() {
    // A layout claiming 2^40 ciphertexts; a shape whose element count overflows; a run whose
    // element index overflows; a plan declaring 2^32 − 1 registers; a slot count past N/2.
    let mut plan = small_plan();
    plan.registers = u32::MAX;
    let err = Plan::from_bytes(&plan.to_bytes().unwrap()).unwrap_err();
    assert!(
        err.to_string().contains("4294967295 registers declared"),
        "{err}"
    );

    let mut plan = small_plan();
    plan.slots = 1 << 32;
    assert!(
        plan.validate()
            .unwrap_err()
            .to_string()
            .contains("slot count")
    );

    let json = serde_json::to_value(small_plan()).unwrap();
    let hostile = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut j = json.clone();
        edit(&mut j["inputs"][0]["layout"]);
        serde_json::from_value::<Plan>(j).unwrap_err().to_string()
    };
    let e = hostile(&|l| l["ciphertexts"] = (1u64 << 40).into());
    assert!(e.contains("more than 268435456 slots"), "{e}");
    let e = hostile(&|l| l["shape"] = serde_json::json!([1u64 << 40, 1u64 << 40]));
    assert!(e.contains("more than 268435456 slots"), "{e}");
    let e = hostile(&|l| l["runs"][0]["step"] = i64::MAX.into());
    assert!(e.contains("outside the tensor"), "{e}");
    // The layouts of one decoding share a budget: the small plan's four layouts hold 32 slots.
    let bytes = small_plan().to_bytes().unwrap();
    assert!(Plan::from_bytes_within(&bytes, 32).is_ok());
    assert!(Plan::from_bytes_within(&bytes, 31).is_err());
    let within = |budget| {
        cachemir_ir::layout::with_decode_budget(budget, || {
            serde_json::from_value::<Plan>(json.clone()).map_err(|e| e.to_string())
        })
    };
    assert!(within(32).is_ok());
    let e = within(20).unwrap_err();
    assert!(
        e.contains("a layout of 8 slots past the decoding's budget (4 slots left)"),
        "{e}"
    );
    // Many elements in few slots: rejected by validation before any per-element allocation.
    let mut j = json.clone();
    j["inputs"][0]["layout"]["shape"] = serde_json::json!([1u64 << 40]);
    let plan: Plan = serde_json::from_value(j).unwrap();
    assert!(
        plan.validate()
            .unwrap_err()
            .to_string()
            .contains("in no slot")
    );
}

#[test]
fn gather_plaintexts_with_overflowing_runs_are_errors() {
    let p = Plaintext::Gather {
        tensor: TensorRef::Weight("w".into()),
        runs: vec![Run {
            ciphertext: 0,
            slot: 0,
            count: 3,
            element: 0,
            step: i64::MAX,
        }],
        scale: 1.0,
    };
    assert!(p.slots(SLOTS, &[1.0; 16]).is_err());
}

/// Writes the fuzz target's seed corpus, `fuzz/corpus/plan_decode/seed-small.plan`; run it after
/// a change of the plan format (`cargo test -p cachemir-ir --test plan_decode -- --ignored`).
#[test]
#[ignore = "writes the fuzz seed corpus"]
fn write_fuzz_seed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/plan_decode");
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = small_plan().to_bytes().unwrap();
    assert_eq!(decode_untrusted(&bytes), Outcome::Accepted);
    std::fs::write(dir.join("seed-small.plan"), bytes).unwrap();
}
