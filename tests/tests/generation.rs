//! Generation plans (issue 9, item 3): the shared decoder-with-past exports compiled with
//! `--generation --max-context 40` run token by token on `sim` — the 18-token prompt of
//! `generation.json` fed one token a step, then 16 generated tokens — with the KV cache carried
//! between steps as ciphertexts. Teacher-forced on the reference transcript: every step's logits
//! are compared with the f64 reference interpreter running the same sliding-cache step, and the
//! greedy token must equal the transcript's wherever the reference margin exceeds twice the
//! logits error bound.

use cachemir_compiler::lower::weights::weight_values;
use cachemir_compiler::reference::models_dir;
use cachemir_ir::plan::TensorRef;
use cachemir_tests::generation::{
    GenerationStep, Transcript, compile_generation_step, empty_states, reference_step,
};
use cachemir_tests::{SLOTS, lower_model_at};
use cachemir_vm::generation::argmax;
use cachemir_vm::{Generator, SimBackend};
use std::collections::HashMap;

const MAX_CONTEXT: usize = 40;
/// The lowering issue's bound on the logits' max abs error.
const LOGITS_BOUND: f64 = 0.05;
/// Calibration samples recorded per model that the plans are calibrated on (before the
/// generation rollouts).
const SAMPLES: usize = 8;

fn generate_teacher_forced(model: &str) {
    let Some(dir) = models_dir() else { return };
    let transcript = Transcript::load(&dir, model);
    let GenerationStep {
        reference,
        approximated: graph,
        generation,
    } = compile_generation_step(&dir, model, MAX_CONTEXT, SAMPLES);
    let lowered = lower_model_at(&graph, model, SLOTS);
    let mut plan = cachemir_compiler::lower::dedupe::dedupe(&lowered.plan).0;
    plan.generation = Some(generation.clone());
    plan.validate().unwrap();
    // The lowered step's operation counts: the masked KV write of a broadcast new token must
    // stay a few shared instructions (a stacked conversion of it once cost 4× the plan).
    insta::assert_snapshot!(
        format!("{model}_generation_{MAX_CONTEXT}_counts"),
        format!(
            "{} instructions, {} rotation steps\n{:?}",
            plan.instructions.len(),
            plan.rotations.len(),
            plan.counts()
        )
    );
    let weights: HashMap<TensorRef, Vec<f64>> = weight_values(&lowered, &graph)
        .into_iter()
        .map(|(name, (_, values))| (TensorRef::Weight(name), values))
        .collect();
    let backend = SimBackend::for_plan(&plan);
    let mut generator = Generator::new(&backend, &plan, weights).unwrap();
    let mut states = empty_states(&reference);

    let feed: Vec<i64> = transcript
        .prompt_ids
        .iter()
        .chain(&transcript.generated_ids)
        .copied()
        .collect();
    let first_generated = transcript.prompt_ids.len() - 1;
    let (mut worst, mut agreed, mut compared) = (0.0f64, 0, 0);
    for (step, &token) in feed.iter().enumerate().take(feed.len() - 1) {
        let ours = generator.step(token).unwrap();
        let (expected, next) = reference_step(&reference, &generation, step, token, &states);
        states = next;
        assert_eq!(
            ours.logits.len(),
            expected.len(),
            "{model} step {step}: logits length"
        );
        assert!(
            ours.logits.iter().all(|v| v.is_finite()),
            "{model} step {step}: non-finite logits {:?}; range violations {:#?}",
            &ours.logits[..8],
            &ours.report.violations[..ours.report.violations.len().min(4)]
        );
        let error = ours
            .logits
            .iter()
            .zip(&expected)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        worst = worst.max(error);
        assert!(
            error <= LOGITS_BOUND,
            "{model} step {step}: logits max abs error {error:.2e} > {LOGITS_BOUND}; range \
             violations {:#?}",
            &ours.report.violations[..ours.report.violations.len().min(4)]
        );
        if step >= first_generated {
            let index = step - first_generated;
            let want = transcript.generated_ids[index];
            assert_eq!(
                argmax(&expected).unwrap() as i64,
                want,
                "{model} step {step}: the reference interpreter disagrees with generation.json"
            );
            let got = argmax(&ours.logits).unwrap() as i64;
            if transcript.margins[index] > 2.0 * LOGITS_BOUND {
                compared += 1;
                assert_eq!(got, want, "{model} generated token {index} (step {step})");
            }
            agreed += usize::from(got == want);
        }
    }
    eprintln!(
        "{model}: {} steps of a {MAX_CONTEXT}-token generation plan on sim, logits max abs error \
         {worst:.2e}; generated tokens equal to generation.json: {agreed}/{} ({compared} with a \
         reference margin above {})",
        feed.len() - 1,
        transcript.generated_ids.len(),
        2.0 * LOGITS_BOUND
    );
}

#[test]
fn tiny_llama_generates_its_transcript() {
    generate_teacher_forced("tiny_llama_with_past_ts17");
}

#[test]
fn tiny_gpt2_generates_its_transcript() {
    generate_teacher_forced("tiny_gpt2_with_past_ts17");
}
