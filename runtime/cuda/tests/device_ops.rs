//! Every kernel and CKKS operation on the device against `cachemir-ckks` on the CPU, bit for bit
//! (the same residues, levels and scales), at ToyN12 and ToyN13 (N = 2^12, 2^13; INSECURE) on
//! random inputs: NTT round trip, ct-ct mul + relinearize, rescale, rotations (single, hoisted,
//! conjugation), plaintext and constant operations, level-down. Skipped without a GPU.
#![cfg(feature = "cuda")]

mod common;

use cachemir_ckks::ring::ntt::NttTable;
use cachemir_ckks::ring::poly::RnsPoly;
use cachemir_ckks::{
    Ciphertext, CkksContext, Csprng, Encoder, Encryptor, Evaluator as CpuEvaluator, KeyGenerator,
    ParamSet, Security,
};
use cachemir_cuda::evaluator::{
    DeviceCiphertext, DeviceGaloisKey, DevicePlaintext, DeviceSwitchingKey, Evaluator,
};
use cachemir_cuda::poly::DevicePoly;
use common::device;

#[test]
fn ntt_round_trip_matches_the_cpu() {
    let Some(dev) = device() else { return };
    for set in [ParamSet::ToyN12, ParamSet::ToyN13] {
        let ctx = CkksContext::from_set(set, Security::InsecureForTesting).unwrap();
        let ev = Evaluator::new(dev.clone(), &ctx).unwrap();
        let (n, q) = (ctx.n(), ctx.params().q.clone());
        let coeffs = RnsPoly::from_data(n, random_residues(&q, n, 7));
        let mut cpu = coeffs.clone();
        for (i, &qi) in q.iter().enumerate() {
            NttTable::new(n, qi).unwrap().forward(cpu.limb_mut(i));
        }
        let up = DevicePoly::upload(&dev, &coeffs).unwrap();
        let fwd = ev.ntt(&up, true).unwrap();
        assert_eq!(fwd.download(&dev).unwrap(), cpu, "{set:?}: forward NTT");
        let back = ev.ntt(&fwd, false).unwrap();
        assert_eq!(back.download(&dev).unwrap(), coeffs, "{set:?}: inverse NTT");
    }
}

struct Fixture {
    ctx: CkksContext,
    cpu: CpuEvaluator,
    ev: Evaluator,
    a: Ciphertext,
    b: Ciphertext,
    encoder: Encoder,
    kg: KeyGenerator,
    sk: cachemir_ckks::SecretKey,
}

fn fixture(set: ParamSet, dev: std::sync::Arc<cachemir_cuda::CudaDevice>) -> Fixture {
    let ctx = CkksContext::from_set(set, Security::InsecureForTesting).unwrap();
    let mut kg = KeyGenerator::with_rng(&ctx, Csprng::from_seed([5; 32]));
    let sk = kg.secret_key();
    let encoder = Encoder::new(&ctx);
    let slots = ctx.n() / 2;
    let scale = 2f64.powi(ctx.params().log_scale as i32);
    let mut enc = Encryptor::with_rng(&ctx, Csprng::from_seed([6; 32]));
    let mut encrypt = |seed| {
        let pt = encoder
            .encode_real(&random_slots(slots, seed), slots, ctx.max_level(), scale)
            .unwrap();
        enc.encrypt_sk(&sk, &pt).unwrap()
    };
    let (a, b) = (encrypt(11), encrypt(12));
    Fixture {
        cpu: CpuEvaluator::new(&ctx),
        ev: Evaluator::new(dev, &ctx).unwrap(),
        ctx,
        a,
        b,
        encoder,
        kg,
        sk,
    }
}

fn up(f: &Fixture, ct: &Ciphertext) -> DeviceCiphertext {
    DeviceCiphertext::upload(&f.ev, ct).unwrap()
}

fn down(f: &Fixture, ct: &DeviceCiphertext) -> Ciphertext {
    ct.download(&f.ev).unwrap()
}

#[test]
fn arithmetic_rescale_and_level_down_match_the_cpu() {
    let Some(dev) = device() else { return };
    for set in [ParamSet::ToyN12, ParamSet::ToyN13] {
        let f = fixture(set, dev.clone());
        let (da, db) = (up(&f, &f.a), up(&f, &f.b));
        let top = f.ctx.max_level();
        assert_eq!(down(&f, &da), f.a, "{set:?}: upload/download");
        assert_eq!(
            down(&f, &f.ev.add(&da, &db).unwrap()),
            f.cpu.add(&f.a, &f.b).unwrap()
        );
        assert_eq!(
            down(&f, &f.ev.sub(&da, &db).unwrap()),
            f.cpu.sub(&f.a, &f.b).unwrap()
        );
        assert_eq!(
            down(&f, &f.ev.negate(&da).unwrap()),
            f.cpu.negate(&f.a).unwrap()
        );
        let slots = f.ctx.n() / 2;
        let pt = f
            .encoder
            .encode_real(&random_slots(slots, 3), slots, top, f.a.scale())
            .unwrap();
        let dpt = DevicePlaintext::upload(&f.ev, &pt).unwrap();
        assert_eq!(
            down(&f, &f.ev.add_plain(&da, &dpt).unwrap()),
            f.cpu.add_plain(&f.a, &pt).unwrap()
        );
        assert_eq!(
            down(&f, &f.ev.sub_plain(&da, &dpt).unwrap()),
            f.cpu.sub_plain(&f.a, &pt).unwrap()
        );
        let prod = f.ev.mul_plain(&da, &dpt).unwrap();
        let cpu_prod = f.cpu.mul_plain(&f.a, &pt).unwrap();
        assert_eq!(down(&f, &prod), cpu_prod, "{set:?}: mul_plain");
        assert_eq!(
            down(&f, &f.ev.rescale(&prod).unwrap()),
            f.cpu.rescale(&cpu_prod).unwrap(),
            "{set:?}: rescale"
        );
        assert_eq!(
            down(&f, &f.ev.add_const(&da, -0.375).unwrap()),
            f.cpu.add_const(&f.a, -0.375).unwrap()
        );
        assert_eq!(
            down(&f, &f.ev.mul_const(&da, 0.7, 2f64.powi(40)).unwrap()),
            f.cpu.mul_const(&f.a, 0.7, 2f64.powi(40)).unwrap()
        );
        assert_eq!(
            down(&f, &f.ev.mul_integer(&da, -3).unwrap()),
            f.cpu.mul_integer(&f.a, -3).unwrap()
        );
        assert_eq!(
            down(&f, &f.ev.level_down(&da, 2).unwrap()),
            f.cpu.level_down(&f.a, 2).unwrap()
        );
        assert_eq!(
            down(&f, &f.ev.mul_no_relin(&da, &db).unwrap()),
            f.cpu.mul_no_relin(&f.a, &f.b).unwrap(),
            "{set:?}: tensor product"
        );
    }
}

#[test]
fn mul_relinearize_matches_the_cpu_at_every_level() {
    let Some(dev) = device() else { return };
    for set in [ParamSet::ToyN12, ParamSet::ToyN13] {
        let mut f = fixture(set, dev.clone());
        let top = f.ctx.max_level();
        let rlk = f.kg.relin_key(&f.sk, top).unwrap();
        let drlk = DeviceSwitchingKey::upload(&f.ev, rlk.switching_key()).unwrap();
        // Every digit count: the top level and levels that cut a digit short.
        for level in [top, top - 1, 3, 1, 0] {
            let (a, b) = (
                f.cpu.level_down(&f.a, level).unwrap(),
                f.cpu.level_down(&f.b, level).unwrap(),
            );
            let cpu = f.cpu.mul_relin(&a, &b, &rlk).unwrap();
            let gpu = f.ev.mul_relin(&up(&f, &a), &up(&f, &b), &drlk).unwrap();
            assert_eq!(
                down(&f, &gpu),
                cpu,
                "{set:?}: mul + relinearize at level {level}"
            );
            if level > 0 {
                assert_eq!(
                    down(&f, &f.ev.rescale(&gpu).unwrap()),
                    f.cpu.rescale(&cpu).unwrap()
                );
            }
        }
    }
}

#[test]
fn rotations_single_hoisted_and_conjugation_match_the_cpu() {
    let Some(dev) = device() else { return };
    for set in [ParamSet::ToyN12, ParamSet::ToyN13] {
        let mut f = fixture(set, dev.clone());
        let log_n = f.ctx.params().log_n;
        let top = f.ctx.max_level();
        let steps = [1i64, 5, -3, 100];
        let gks = f.kg.galois_keys(&f.sk, &steps, true, top).unwrap();
        // Keys below the top level serve lower ciphertexts only (the key's level is checked).
        let mut device_keys = std::collections::BTreeMap::new();
        for g in gks.elements().collect::<Vec<_>>() {
            let key = gks.get(g, None).unwrap();
            device_keys.insert(g, DeviceGaloisKey::upload(&f.ev, key).unwrap());
        }
        let key_for = |step: i64| {
            let g = cachemir_ckks::ring::automorphism::rotation_element(log_n, step);
            &device_keys[&g]
        };
        for level in [top, 2] {
            let a = f.cpu.level_down(&f.a, level).unwrap();
            let da = up(&f, &a);
            for &s in &steps {
                let cpu = f.cpu.rotate(&a, s, &gks).unwrap();
                let gpu = f.ev.apply_galois(&da, key_for(s)).unwrap();
                assert_eq!(down(&f, &gpu), cpu, "{set:?}: rotate {s} at level {level}");
            }
            let h = f.cpu.hoist(&a).unwrap();
            let cpu = f.cpu.rotate_hoisted(&h, &steps, &gks).unwrap();
            let dh = f.ev.hoist(&da).unwrap();
            for (&s, c) in steps.iter().zip(&cpu) {
                let gpu = f.ev.rotate_hoisted(&dh, key_for(s)).unwrap();
                assert_eq!(
                    &down(&f, &gpu),
                    c,
                    "{set:?}: hoisted rotate {s} at level {level}"
                );
            }
            let conj = cachemir_ckks::ring::automorphism::conjugation_element(log_n);
            let cpu = f.cpu.conjugate(&a, &gks).unwrap();
            let gpu = f.ev.apply_galois(&da, &device_keys[&conj]).unwrap();
            assert_eq!(down(&f, &gpu), cpu, "{set:?}: conjugate at level {level}");
        }
    }
}

/// Deterministic residues below each prime (xorshift), limb-major.
pub fn random_residues(primes: &[u64], n: usize, seed: u64) -> Vec<u64> {
    let mut s = seed | 1;
    (0..primes.len() * n)
        .map(|k| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % primes[k / n]
        })
        .collect()
}

/// Deterministic slot values in [−1, 1].
pub fn random_slots(slots: usize, seed: u64) -> Vec<f64> {
    let mut s = seed | 1;
    (0..slots)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}
