//! The `sim` backend: executes a plan on cleartext slot vectors with exact rotation semantics.

use cachemir_ir::plan::{Instruction, Plan, PlanError, TensorRef};
use std::collections::HashMap;

/// Errors while executing a plan.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("plaintext {index} reads {tensor}, which was not provided")]
    MissingTensor { index: usize, tensor: TensorRef },
    #[error("input {name}: {given} ciphertexts given, the layout has {expected}")]
    InputParts {
        name: String,
        given: usize,
        expected: usize,
    },
    #[error("instruction {index} `{instruction}` ({site}): {message}")]
    Instruction {
        index: usize,
        instruction: String,
        site: String,
        message: String,
    },
}

/// Executes `plan` on slot vectors: `inputs[i][part]` for each encrypted input, with the tensors
/// its plaintexts read (weights and public values, row-major); returns `outputs[o][part]`.
pub fn execute(
    plan: &Plan,
    tensors: &HashMap<TensorRef, Vec<f64>>,
    inputs: &[Vec<Vec<f64>>],
) -> Result<Vec<Vec<Vec<f64>>>, VmError> {
    let slots = plan.slots;
    for (io, given) in plan.inputs.iter().zip(inputs) {
        if given.len() != io.layout.ciphertexts() {
            return Err(VmError::InputParts {
                name: io.name.clone(),
                given: given.len(),
                expected: io.layout.ciphertexts(),
            });
        }
    }
    let mut plaintexts: Vec<Option<Vec<f64>>> = vec![None; plan.plaintexts.len()];
    let mut registers: Vec<Option<Vec<f64>>> = vec![None; plan.registers as usize];
    let mut outputs: Vec<Vec<Vec<f64>>> = plan
        .outputs
        .iter()
        .map(|o| vec![vec![0.0; slots]; o.layout.ciphertexts()])
        .collect();
    let error = |index: usize, message: String| {
        let site = plan
            .instruction_sites
            .get(index)
            .and_then(|s| plan.sites.get(*s as usize))
            .map_or(String::new(), |s| s.name.clone());
        VmError::Instruction {
            index,
            instruction: plan.instructions[index].to_string(),
            site,
            message,
        }
    };
    for (index, instruction) in plan.instructions.iter().enumerate() {
        let read = |r: u32| -> Result<&Vec<f64>, VmError> {
            registers
                .get(r as usize)
                .and_then(Option::as_ref)
                .ok_or_else(|| error(index, format!("r{r} holds no value")))
        };
        let mut plain = |p: u32| -> Result<Vec<f64>, VmError> {
            let p = p as usize;
            if plaintexts[p].is_none() {
                let plaintext = &plan.plaintexts[p];
                let values: &[f64] = match plaintext.tensor() {
                    None => &[],
                    Some(tensor) => tensors.get(tensor).ok_or_else(|| VmError::MissingTensor {
                        index: p,
                        tensor: tensor.clone(),
                    })?,
                };
                plaintexts[p] = Some(plaintext.slots(slots, values)?);
            }
            Ok(plaintexts[p].clone().expect("just built"))
        };
        let zip = |a: &[f64], b: &[f64], f: fn(f64, f64) -> f64| -> Vec<f64> {
            a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()
        };
        let rotate = |a: &[f64], step: i32| -> Vec<f64> {
            let k = step.rem_euclid(slots as i32) as usize;
            (0..slots).map(|s| a[(s + k) % slots]).collect()
        };
        let result: Vec<(u32, Vec<f64>)> = match instruction {
            Instruction::Load { dst, input, part } => {
                let value = inputs
                    .get(input.0 as usize)
                    .and_then(|i| i.get(part.0 as usize))
                    .ok_or_else(|| error(index, "no such input ciphertext".into()))?;
                vec![(dst.0, value.clone())]
            }
            Instruction::Store { src, output, part } => {
                outputs[output.0 as usize][part.0 as usize] = read(src.0)?.clone();
                vec![]
            }
            Instruction::Add { dst, a, b } => {
                vec![(dst.0, zip(read(a.0)?, read(b.0)?, |x, y| x + y))]
            }
            Instruction::Sub { dst, a, b } => {
                vec![(dst.0, zip(read(a.0)?, read(b.0)?, |x, y| x - y))]
            }
            Instruction::Multiply { dst, a, b } => {
                vec![(dst.0, zip(read(a.0)?, read(b.0)?, |x, y| x * y))]
            }
            Instruction::AddPlain { dst, a, plaintext } => {
                let p = plain(plaintext.0)?;
                vec![(dst.0, zip(read(a.0)?, &p, |x, y| x + y))]
            }
            Instruction::SubPlain { dst, a, plaintext } => {
                let p = plain(plaintext.0)?;
                vec![(dst.0, zip(read(a.0)?, &p, |x, y| x - y))]
            }
            Instruction::MultiplyPlain { dst, a, plaintext } => {
                let p = plain(plaintext.0)?;
                vec![(dst.0, zip(read(a.0)?, &p, |x, y| x * y))]
            }
            Instruction::AddScalar { dst, a, value } => {
                vec![(dst.0, read(a.0)?.iter().map(|x| x + value.0).collect())]
            }
            Instruction::MultiplyScalar { dst, a, value } => {
                vec![(dst.0, read(a.0)?.iter().map(|x| x * value.0).collect())]
            }
            Instruction::Negate { dst, a } => {
                vec![(dst.0, read(a.0)?.iter().map(|x| -x).collect())]
            }
            Instruction::Rotate { dst, a, step } => vec![(dst.0, rotate(read(a.0)?, step.0))],
            Instruction::RotateHoisted { dsts, a, steps } => {
                let a = read(a.0)?;
                dsts.0
                    .iter()
                    .zip(&steps.0)
                    .map(|(d, s)| (*d, rotate(a, *s)))
                    .collect()
            }
            Instruction::Rescale { dst, a }
            | Instruction::LevelDown { dst, a, .. }
            | Instruction::Bootstrap { dst, a, .. } => vec![(dst.0, read(a.0)?.clone())],
            Instruction::Free { a } => {
                registers[a.0 as usize] = None;
                vec![]
            }
        };
        for (r, value) in result {
            *registers
                .get_mut(r as usize)
                .ok_or_else(|| error(index, format!("r{r} out of range")))? = Some(value);
        }
    }
    Ok(outputs)
}
