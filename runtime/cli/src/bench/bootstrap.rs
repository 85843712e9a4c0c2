//! `cachemir bench --bootstrap [--slots K]`: latency and precision of CKKS bootstrapping
//! (`cachemir_ckks::bootstrap`) at a bootstrappable set, full (default) or sparse slots; op
//! `bootstrap` in the JSON output, with the circuit's depth, output level, key bytes and
//! key-generation time.

use anyhow::{Context, Result, bail};
use cachemir_ckks::bootstrap::{BootParamSet, BootstrapConfig, BootstrapPlan, Bootstrapper};
use cachemir_ckks::{
    CkksContext, Complex64, Csprng, Decryptor, Encoder, Encryptor, KeyGenerator, Security,
};

use super::{BenchArgs, params_json, thread_pool, time};

/// −log2 max |want − got| over complex slots.
fn precision_bits(want: &[Complex64], got: &[Complex64]) -> f64 {
    let err = want
        .iter()
        .zip(got)
        .map(|(a, b)| (a - b).norm())
        .fold(0.0f64, f64::max);
    -err.max(1e-300).log2()
}

pub fn run(args: &BenchArgs) -> Result<()> {
    thread_pool(args)?;
    // The primitive benches default to N16Boot; bootstrapping needs its own chain.
    let name = args.params_or("N16BootFull");
    let name = if name.eq_ignore_ascii_case("N16Boot") {
        "N16BootFull"
    } else {
        name
    };
    let set = BootParamSet::from_name(name).with_context(|| {
        format!(
            "unknown bootstrappable set `{name}` (known: {})",
            BootParamSet::ALL.map(|s| s.name()).join(", ")
        )
    })?;
    if set.is_toy() && !args.insecure {
        bail!(
            "parameter set {} is insecure (toy); pass --insecure to use it",
            set.name()
        );
    }
    let security = if set.is_toy() {
        Security::InsecureForTesting
    } else {
        Security::Bits128
    };
    let ctx = CkksContext::new(set.params()?, security)?;
    let p = ctx.params().clone();
    let slots = args.slots.unwrap_or(p.max_slots());
    let plan = BootstrapPlan::new(&ctx, &BootstrapConfig::new(slots))?;
    if !args.json {
        let (keys, bytes) = plan.key_estimate();
        eprintln!(
            "cachemir bench --bootstrap: {} (N = 2^{}, {} q-limbs, {} special, dnum {}, log2 QP = {:.0}), {slots} slots, \
             {} thread(s); depth {}, output level {}, {keys} Galois keys ≈ {:.2} GiB",
            p.name,
            p.log_n,
            p.q.len(),
            p.p.len(),
            p.dnum,
            p.log_qp(),
            args.threads,
            plan.depth(),
            plan.output_level(),
            bytes as f64 / (1u64 << 30) as f64
        );
    }
    let mut kg = KeyGenerator::new(&ctx)?;
    let sk = kg.secret_key();
    let start = std::time::Instant::now();
    let keys = plan.generate_keys(&mut kg, &sk)?;
    let keygen_ms = start.elapsed().as_secs_f64() * 1e3;
    let bs = Bootstrapper::from_keys(plan, keys)?;
    let mut rng = Csprng::from_os()?;
    let mut uniform = || (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
    let z: Vec<Complex64> = (0..slots)
        .map(|_| Complex64::new(uniform(), uniform()) * std::f64::consts::FRAC_1_SQRT_2)
        .collect();
    let pt = Encoder::new(&ctx).encode_complex(&z, slots, 0, p.default_scale())?;
    let ct = Encryptor::new(&ctx)?.encrypt_sk(&sk, &pt)?;
    let (ms, out) = time(args.runs, || Ok(bs.bootstrap(&ct)?))?;
    if !args.json {
        // One more pass with stage timestamps (ms since start; full slots run EvalMod twice).
        let start = std::time::Instant::now();
        let mut stages = Vec::new();
        bs.bootstrap_inspect(&ct, &mut |stage, _| {
            stages.push(format!(
                "{stage} {:.0}",
                start.elapsed().as_secs_f64() * 1e3
            ));
        })?;
        eprintln!(
            "stages (ms since start): {}; pre-encoded DFT diagonals {:.0} MiB",
            stages.join(", "),
            bs.precomputed_bytes() as f64 / (1u64 << 20) as f64
        );
    }
    let bits = precision_bits(&z, &Decryptor::new(&ctx).decrypt_complex(&sk, &out)?);
    if args.json {
        let out = serde_json::json!({
            "params": params_json(&p, if set.is_toy() { 0 } else { 128 }),
            "threads": args.threads,
            "results": [{
                "op": "bootstrap",
                "level": out.level(),
                "median_ms": ms,
                "runs": args.runs,
                "precision_bits": bits,
                "slots": slots,
                "depth": bs.depth(),
                "expected_precision_bits": bs.expected_precision_bits(),
                "key_bytes": bs.key_bytes(),
                "precomputed_bytes": bs.precomputed_bytes(),
                "keygen_ms": keygen_ms,
            }],
        });
        println!("{out}");
    } else {
        println!(
            "{:<12} {:>6} {:>12} {:>5} {:>10} {:>7} {:>10} {:>12}",
            "op", "level", "median ms", "runs", "prec bits", "depth", "keys MiB", "keygen ms"
        );
        println!(
            "{:<12} {:>6} {:>12.1} {:>5} {:>10.1} {:>7} {:>10.0} {:>12.0}",
            "bootstrap",
            out.level(),
            ms,
            args.runs,
            bits,
            bs.depth(),
            bs.key_bytes() as f64 / (1u64 << 20) as f64,
            keygen_ms
        );
    }
    Ok(())
}
