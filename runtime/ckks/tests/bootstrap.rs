//! Bootstrapping tests against cleartext slots, precision in bits (−log2 of the max abs error).
//! Toy set (N = 2^12, insecure) in CI; N = 2^16 in `#[ignore]` tests.

use cachemir_ckks::bootstrap::poly_eval::{
    chebyshev_eval, chebyshev_interpolate, evaluate_chebyshev,
};
use cachemir_ckks::bootstrap::{BootParamSet, BootstrapConfig, BootstrapPlan, Bootstrapper};
use cachemir_ckks::*;

struct Setup {
    ctx: CkksContext,
    sk: SecretKey,
    enc: Encoder,
    dec: Decryptor,
}

fn setup(set: BootParamSet) -> Setup {
    let security = if set.is_toy() {
        Security::InsecureForTesting
    } else {
        Security::Bits128
    };
    let ctx = CkksContext::new(set.params().unwrap(), security).unwrap();
    let mut kg = KeyGenerator::with_rng(&ctx, Csprng::from_seed([7; 32]));
    let sk = kg.secret_key();
    Setup {
        enc: Encoder::new(&ctx),
        dec: Decryptor::new(&ctx),
        ctx,
        sk,
    }
}

fn encryptor(ctx: &CkksContext) -> Encryptor {
    Encryptor::with_rng(ctx, Csprng::from_seed([8; 32]))
}

/// Deterministic test slots with |z| ≤ 1 (imaginary parts zero when `real`).
fn message(n: usize, real: bool) -> Vec<Complex64> {
    (0..n)
        .map(|j| {
            let a = (j as f64 * 0.731).sin();
            let b = if real { 0.0 } else { (j as f64 * 0.377).cos() };
            Complex64::new(a, b) * std::f64::consts::FRAC_1_SQRT_2
        })
        .collect()
}

fn bits(got: &[Complex64], want: &[Complex64]) -> f64 {
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).norm())
        .fold(0.0, f64::max);
    -err.log2()
}

#[test]
fn chebyshev_evaluation_lands_on_the_requested_level_and_scale() {
    let s = setup(BootParamSet::ToyBootN12);
    let mut kg = KeyGenerator::with_rng(&s.ctx, Csprng::from_seed([9; 32]));
    let top = s.ctx.max_level();
    let rlk = kg.relin_key(&s.sk, top).unwrap();
    let eval = Evaluator::new(&s.ctx);
    let n = 64;
    let y: Vec<f64> = (0..n)
        .map(|j| -1.0 + 2.0 * j as f64 / (n - 1) as f64)
        .collect();
    let q_top = s.ctx.params().q[top] as f64;
    let pt = s.enc.encode_real(&y, n, top, q_top).unwrap();
    let ct = encryptor(&s.ctx).encrypt_sk(&s.sk, &pt).unwrap();
    let f = |t: f64| (4.0 * t).cos() * 0.5 + 0.25 * t;
    for degree in [1usize, 2, 7, 31, 47] {
        let c = chebyshev_interpolate(f, degree);
        let depth = (usize::BITS - degree.leading_zeros()).max(1) as usize;
        let out_level = top - depth;
        let out_scale = 2f64.powi(45);
        let res = evaluate_chebyshev(&eval, &rlk, &ct, &c, out_level, out_scale).unwrap();
        assert_eq!(res.level(), out_level);
        assert!((res.scale() / out_scale - 1.0).abs() < 1e-12);
        let got = s.dec.decrypt_real(&s.sk, &res).unwrap();
        let err = got
            .iter()
            .zip(&y)
            .map(|(g, &t)| (g - chebyshev_eval(&c, t)).abs())
            .fold(0.0, f64::max);
        eprintln!(
            "Chebyshev degree {degree}: depth {depth}, {:.1} bits",
            -err.log2()
        );
        assert!(
            err < 2f64.powi(-30),
            "degree {degree}: error 2^{:.1}",
            err.log2()
        );
    }
    // Too few levels: typed error.
    let low = eval.level_down(&ct, 3).unwrap();
    let c = chebyshev_interpolate(f, 31);
    assert!(matches!(
        evaluate_chebyshev(&eval, &rlk, &low, &c, 0, 2f64.powi(45)),
        Err(CkksError::LevelTooLow {
            needed: 5,
            level: 3
        })
    ));
}

/// Bootstraps a fresh level-0 encryption of `message(slots, real)` and returns the precision in
/// bits and the output level.
fn bootstrap_case(s: &Setup, slots: usize, real: bool) -> (f64, usize) {
    let cfg = BootstrapConfig::new(slots);
    let bs = Bootstrapper::new(&s.ctx, &cfg, &s.sk).unwrap();
    let z = message(slots, real);
    let pt = s
        .enc
        .encode_complex(&z, slots, 0, s.ctx.params().default_scale())
        .unwrap();
    let ct = encryptor(&s.ctx).encrypt_sk(&s.sk, &pt).unwrap();
    bs.check_input(&s.sk, &ct).unwrap();
    let t = std::time::Instant::now();
    let out = bs.bootstrap(&ct).unwrap();
    let elapsed = t.elapsed();
    assert_eq!(out.level(), bs.output_level());
    assert_eq!(out.slots(), slots);
    let got = s.dec.decrypt_complex(&s.sk, &out).unwrap();
    let b = bits(&got, &z);
    let (k, sigma, fail) = bs.plan().range();
    eprintln!(
        "{} slots ({}): {b:.1} bits (estimate {:.1}), level {} of {}, depth {}, K = {k} (σ = {sigma:.2}, \
         failure 2^-{fail}), EvalMod degree {}, keys {:.1} MiB, {:.2} s",
        slots,
        if real { "real" } else { "complex" },
        bs.expected_precision_bits(),
        out.level(),
        s.ctx.max_level(),
        bs.depth(),
        bs.plan().eval_mod().coeffs.len() - 1,
        bs.key_bytes() as f64 / (1 << 20) as f64,
        elapsed.as_secs_f64()
    );
    (b, out.level())
}

#[test]
fn bootstrap_toy_sparse_slots_real_and_complex() {
    let s = setup(BootParamSet::ToyBootN12);
    for (slots, real) in [(8, true), (64, false)] {
        let (b, level) = bootstrap_case(&s, slots, real);
        assert!(b >= 20.0, "{slots} slots: {b:.1} bits");
        assert_eq!(level, BootParamSet::ToyBootN12.application_levels());
    }
}

#[test]
fn bootstrap_toy_full_slots_real_and_complex() {
    let s = setup(BootParamSet::ToyBootN12);
    let full = s.ctx.params().max_slots();
    for real in [false, true] {
        let (b, _) = bootstrap_case(&s, full, real);
        assert!(b >= 20.0, "full slots: {b:.1} bits");
    }
}

/// The message coefficients w = V^{-1}·z (w_k = a_k + i·a_{k+n}) in bit-reversed order, the
/// order in which CoeffsToSlots leaves them.
fn bit_reversed_coefficients(z: &[Complex64]) -> Vec<Complex64> {
    let n = z.len();
    let four_n = 4 * n as u64;
    let w: Vec<Complex64> = (0..n)
        .map(|k| {
            let mut e = 1u64;
            let mut acc = Complex64::new(0.0, 0.0);
            for zj in z {
                let a =
                    -2.0 * std::f64::consts::PI * ((e * k as u64) % four_n) as f64 / four_n as f64;
                acc += zj * Complex64::new(a.cos(), a.sin());
                e = e * 5 % four_n;
            }
            acc / n as f64
        })
        .collect();
    let bits = n.trailing_zeros();
    (0..n)
        .map(|k| {
            w[if bits == 0 {
                0
            } else {
                k.reverse_bits() >> (usize::BITS - bits)
            }]
        })
        .collect()
}

/// Precision of each stage (diagnostics):
/// `PROBE_SLOTS=2048 cargo test … --test bootstrap -- --ignored --nocapture probe`.
#[test]
#[ignore]
fn probe_stages() {
    let s = setup(BootParamSet::ToyBootN12);
    let env = |k: &str| std::env::var(k).ok().map(|v| v.parse::<u32>().unwrap());
    let slots = env("PROBE_SLOTS").map_or(8, |v| v as usize);
    let mut cfg = BootstrapConfig::new(slots);
    cfg.log_message_ratio = env("PROBE_RATIO").unwrap_or(cfg.log_message_ratio);
    cfg.double_angle = env("PROBE_R").unwrap_or(cfg.double_angle);
    let bs = Bootstrapper::new(&s.ctx, &cfg, &s.sk).unwrap();
    let p = s.ctx.params();
    let (q0, delta) = (p.q[0] as f64, p.default_scale());
    // x − round(x) = w·Δ·F/q0 with F the message-ratio factor.
    let f = (q0 / (delta * (cfg.log_message_ratio as f64).exp2())).round();
    let z = message(slots, false);
    let w = bit_reversed_coefficients(&z);
    let pt = s.enc.encode_complex(&z, slots, 0, delta).unwrap();
    let ct = encryptor(&s.ctx).encrypt_sk(&s.sk, &pt).unwrap();
    let kp = bs.plan().eval_mod().interval;
    let mut xs: Vec<Vec<f64>> = Vec::new();
    let mut mods = 0;
    bs.bootstrap_inspect(&ct, &mut |stage, c| {
        let v = s.dec.decrypt_complex(&s.sk, c).unwrap();
        eprintln!(
            "{stage}: level {} scale 2^{:.2} slots {}",
            c.level(),
            c.scale().log2(),
            c.slots()
        );
        match stage {
            "cts" => {
                let x: Vec<f64> = v.iter().map(|x| x.re * kp).collect();
                let (full, part) = (x.len() == slots, xs.len());
                let err = x
                    .iter()
                    .enumerate()
                    .map(|(j, x)| {
                        let wk = w[j % slots];
                        let t = if (full && part == 0) || (!full && j < slots) {
                            wk.re
                        } else {
                            wk.im
                        };
                        ((x - x.round()) - t * delta * f / q0).abs()
                    })
                    .fold(0.0, f64::max);
                eprintln!(
                    "  CtS error in x: 2^{:.1}, max |x| {:.2}",
                    err.log2(),
                    x.iter().fold(0.0f64, |a, b| a.max(b.abs()))
                );
                xs.push(x);
            }
            "evalmod" => {
                let err = v
                    .iter()
                    .zip(&xs[mods])
                    .map(|(a, x)| (a.re - 2.0 * std::f64::consts::PI * (x - x.round())).abs())
                    .fold(0.0, f64::max);
                eprintln!(
                    "  EvalMod error vs 2π(x_dec − round(x_dec)): 2^{:.1}",
                    err.log2()
                );
                mods += 1;
            }
            "stc" => eprintln!("  final: {:.1} bits", bits(&v, &z)),
            _ => {}
        }
    })
    .unwrap();
}

/// The N = 2^16 plans (no keys): depth, levels left, range, key count and bytes.
#[test]
fn n16_plans_fit_the_chain() {
    let ctx = CkksContext::new(
        BootParamSet::N16BootFull.params().unwrap(),
        Security::Bits128,
    )
    .unwrap();
    for slots in [1 << 15, 1 << 12] {
        let plan = BootstrapPlan::new(&ctx, &BootstrapConfig::new(slots)).unwrap();
        let (keys, bytes) = plan.key_estimate();
        eprintln!(
            "N16BootFull, {slots} slots: depth {}, output level {}, K = {:?}, {keys} Galois keys, {:.2} GiB of keys",
            plan.depth(),
            plan.output_level(),
            plan.range(),
            bytes as f64 / (1u64 << 30) as f64
        );
        assert!(plan.output_level() >= 9);
    }
}

#[test]
fn meta_bts_recovers_the_input_precision() {
    let s = setup(BootParamSet::ToyBootN12);
    let slots = s.ctx.params().max_slots();
    let mut cfg = BootstrapConfig::new(slots);
    cfg.meta_bts = Some(16);
    let bs = Bootstrapper::new(&s.ctx, &cfg, &s.sk).unwrap();
    assert_eq!(
        bs.output_level(),
        BootParamSet::ToyBootN12.application_levels() - 1
    );
    let z = message(slots, false);
    let pt = s
        .enc
        .encode_complex(&z, slots, 0, s.ctx.params().default_scale())
        .unwrap();
    let ct = encryptor(&s.ctx).encrypt_sk(&s.sk, &pt).unwrap();
    let fresh = bits(&s.dec.decrypt_complex(&s.sk, &ct).unwrap(), &z);
    let out = bs.bootstrap(&ct).unwrap();
    assert_eq!(out.level(), bs.output_level());
    assert!((out.scale() / ct.scale() - 1.0).abs() < 1e-12);
    let b = bits(&s.dec.decrypt_complex(&s.sk, &out).unwrap(), &z);
    eprintln!(
        "META-BTS, {slots} slots: {b:.1} bits (fresh input {fresh:.1}), level {}",
        out.level()
    );
    assert!(b >= 28.0, "META-BTS: {b:.1} bits");
}

#[test]
fn input_contract_and_typed_errors() {
    let s = setup(BootParamSet::ToyBootN12);
    let slots = 16;
    let bs = Bootstrapper::new(&s.ctx, &BootstrapConfig::new(slots), &s.sk).unwrap();
    let delta = s.ctx.params().default_scale();
    let big: Vec<Complex64> = (0..slots)
        .map(|j| Complex64::new(if j == 3 { 4.0 } else { 0.1 }, 0.0))
        .collect();
    let ct = encryptor(&s.ctx)
        .encrypt_sk(&s.sk, &s.enc.encode_complex(&big, slots, 0, delta).unwrap())
        .unwrap();
    assert!(matches!(
        bs.check_input(&s.sk, &ct),
        Err(CkksError::InvalidInput(_))
    ));
    // Wrong slot count, too large a scale, degree 2.
    let other = encryptor(&s.ctx)
        .encrypt_sk(&s.sk, &s.enc.encode_real(&[0.5], 8, 0, delta).unwrap())
        .unwrap();
    assert!(matches!(
        bs.bootstrap(&other),
        Err(CkksError::InvalidSlots(_))
    ));
    let mut scaled = ct.clone();
    scaled.set_scale(delta * 8.0);
    assert!(matches!(
        bs.bootstrap(&scaled),
        Err(CkksError::InvalidInput(_))
    ));
    let eval = Evaluator::new(&s.ctx);
    let sq = eval.mul_no_relin(&ct, &ct).unwrap();
    assert!(matches!(
        bs.bootstrap(&sq),
        Err(CkksError::CiphertextDegree(2, 1))
    ));
    // Plans: bad slot counts and level budgets.
    assert!(matches!(
        BootstrapPlan::new(&s.ctx, &BootstrapConfig::new(3)),
        Err(CkksError::InvalidSlots(_))
    ));
    let mut cfg = BootstrapConfig::new(slots);
    (cfg.cts_levels, cfg.stc_levels) = (5, 5);
    assert!(matches!(
        BootstrapPlan::new(&s.ctx, &cfg),
        Err(CkksError::InvalidParameters(_))
    ));
    let small = CkksContext::from_set(ParamSet::ToyN12, Security::InsecureForTesting).unwrap();
    assert!(matches!(
        BootstrapPlan::new(&small, &BootstrapConfig::new(16)),
        Err(CkksError::InvalidParameters(_))
    ));
}

/// N = 2^16 full (complex) and sparse (2^12, real) slots: ≥ 20 bits with ≥ 9 levels left
/// (release build, a few minutes and ≈ 7 GB per bootstrapper):
/// `cargo test --release -p cachemir-ckks --test bootstrap -- --ignored --nocapture n16_boot`.
#[test]
#[ignore]
fn n16_bootstrap_full_and_sparse() {
    let s = setup(BootParamSet::N16BootFull);
    for (slots, real) in [(1 << 15, false), (1 << 12, true)] {
        let (b, level) = bootstrap_case(&s, slots, real);
        assert!(b >= 20.0, "{slots} slots: {b:.1} bits");
        assert!(level >= 9, "{slots} slots: level {level}");
    }
}

#[test]
fn encoded_transforms_match_and_check_levels() {
    use cachemir_ckks::bootstrap::{DftKind, dft_transforms};
    let s = setup(BootParamSet::ToyBootN12);
    let slots = 32;
    let top = s.ctx.max_level();
    let lts = dft_transforms(DftKind::SlotsToCoeffs, slots, false, 2, 1.0).unwrap();
    let lt = &lts[0];
    let mut kg = KeyGenerator::with_rng(&s.ctx, Csprng::from_seed([3; 32]));
    let gks = kg
        .galois_keys(&s.sk, &lt.rotation_steps(), false, top)
        .unwrap();
    let eval = Evaluator::new(&s.ctx);
    let z = message(2 * slots, true);
    let pt = s
        .enc
        .encode_complex(&z, 2 * slots, top, 2f64.powi(50))
        .unwrap();
    let ct = encryptor(&s.ctx).encrypt_sk(&s.sk, &pt).unwrap();
    let enc = lt.encode(&s.ctx, top).unwrap();
    let a = eval.linear_transform(&ct, lt, &gks).unwrap();
    let b = eval.linear_transform_encoded(&ct, &enc, &gks).unwrap();
    assert_eq!(a, b);
    let low = eval.level_down(&ct, top - 1).unwrap();
    assert!(matches!(
        eval.linear_transform_encoded(&low, &enc, &gks),
        Err(CkksError::LevelMismatch(_, _))
    ));
}

/// The dense → sparse encapsulation key lives over q_0·P' (one special prime: 2 limbs), not over
/// q_0·P; the sparse → dense key keeps the full Q_L·P; the a-priori size estimate matches.
#[test]
fn encapsulation_key_modulus_is_q0_times_one_special_prime() {
    use cachemir_ckks::bootstrap::mod_raise::ENCAPSULATION_SPECIAL_PRIMES;
    let s = setup(BootParamSet::ToyBootN12);
    let plan = BootstrapPlan::new(&s.ctx, &BootstrapConfig::new(8)).unwrap();
    let mut kg = KeyGenerator::with_rng(&s.ctx, Csprng::from_seed([5; 32]));
    let keys = plan.generate_keys(&mut kg, &s.sk).unwrap();
    let p = s.ctx.params();
    let enc = keys.to_sparse.as_ref().unwrap();
    assert_eq!(ENCAPSULATION_SPECIAL_PRIMES, 1);
    assert_eq!(enc.num_limbs(), 2);
    assert_eq!(enc.num_special(), 1);
    assert_eq!(enc.hamming_weight(), 32);
    let want = (p.q[0] as f64).log2() + (p.p[0] as f64).log2();
    assert!((enc.log_modulus(&s.ctx) - want).abs() < 1e-9);
    assert!(enc.log_modulus(&s.ctx) <= 128.0);
    assert_eq!(enc.size_bytes(), 2 * 2 * s.ctx.n() * 8);
    let dense = keys.to_dense.as_ref().unwrap();
    assert_eq!(dense.level(), s.ctx.max_level());
    assert_eq!(plan.key_estimate().1, keys.size_bytes());
}

/// Switching a level-0 ciphertext to the sparse secret over q_0·P' adds the key noise divided
/// by P' only (d·e/P' ≈ (q_0/P')·σ·sqrt(N/12) per coefficient, about 2^6 at N = 2^12): about 38
/// bits at scale q_0/2^8 (fresh: about 43), far above the 27 – 34 bits bootstrapping reaches.
#[test]
fn encapsulation_switch_keeps_level0_precision() {
    use cachemir_ckks::bootstrap::mod_raise::{EncapsulationKey, sparse_secret};
    let s = setup(BootParamSet::ToyBootN12);
    let sparse = sparse_secret(&s.ctx, 32).unwrap();
    let mut kg = KeyGenerator::with_rng(&s.ctx, Csprng::from_seed([6; 32]));
    let key = EncapsulationKey::generate(&mut kg, &s.ctx, &s.sk, &sparse).unwrap();
    let slots = s.ctx.params().max_slots();
    let z = message(slots, false);
    // Scale near q_0/2^8, as bootstrapping's pre-multiplied input.
    let scale = (s.ctx.params().q[0] as f64) / 2f64.powi(8);
    let pt = s.enc.encode_complex(&z, slots, 0, scale).unwrap();
    let ct = encryptor(&s.ctx).encrypt_sk(&s.sk, &pt).unwrap();
    let before = bits(&s.dec.decrypt_complex(&s.sk, &ct).unwrap(), &z);
    let sw = key.switch(&s.ctx, &ct).unwrap();
    let after = bits(&s.dec.decrypt_complex(&sparse, &sw).unwrap(), &z);
    eprintln!("level-0 switch to the sparse secret: {before:.1} -> {after:.1} bits");
    assert!(after >= 36.0, "{before:.1} -> {after:.1} bits");
    let eval = Evaluator::new(&s.ctx);
    let up = eval.level_down(&ct, 0).unwrap();
    assert!(key.switch(&s.ctx, &up).is_ok());
    let high = encryptor(&s.ctx)
        .encrypt_sk(&s.sk, &s.enc.encode_complex(&z, slots, 1, scale).unwrap())
        .unwrap();
    assert!(matches!(
        key.switch(&s.ctx, &high),
        Err(CkksError::LevelMismatch(1, 0))
    ));
}

/// At N = 2^16 (128-bit context) the encapsulation key's modulus q_0·P' (120 bits) passes the
/// sparse-secret bound, and a key under the h = 32 secret over q_0·P (420 bits) is refused.
#[test]
fn encapsulation_key_meets_the_sparse_secret_bound_at_n16() {
    use cachemir_ckks::bootstrap::mod_raise::{EncapsulationKey, sparse_secret};
    use cachemir_ckks::params::security::max_log_q_sparse_key;
    let ctx = CkksContext::new(
        BootParamSet::N16BootFull.params().unwrap(),
        Security::Bits128,
    )
    .unwrap();
    let mut kg = KeyGenerator::with_rng(&ctx, Csprng::from_seed([9; 32]));
    let sk = kg.secret_key();
    let sparse = sparse_secret(&ctx, 32).unwrap();
    let key = EncapsulationKey::generate(&mut kg, &ctx, &sk, &sparse).unwrap();
    let bound = max_log_q_sparse_key(16, 32).unwrap();
    eprintln!(
        "N16BootFull encapsulation key: {} limbs, log2(q_0·P') = {:.1} bits (bound {bound})",
        key.num_limbs(),
        key.log_modulus(&ctx)
    );
    assert_eq!(key.num_limbs(), 2);
    assert!(key.log_modulus(&ctx) <= bound as f64);
    assert!(matches!(
        kg.switching_key_between(&sk, &sparse, 0),
        Err(CkksError::InsecureSparseKey {
            bound: 128,
            hamming_weight: 32,
            ..
        })
    ));
    // The sparse → dense key is under the dense secret: allowed at the top level.
    let top = ctx.max_level();
    assert!(kg.switching_key_between(&sparse, &sk, top).is_ok());
}
