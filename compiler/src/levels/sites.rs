//! The site graph the placement works on: one node per Tensor IR node that emitted instructions
//! (a plan site), an edge wherever a site reads a register another site wrote, and per edge the
//! number of levels the site consumes from that input to its outputs.
//!
//! Levels compose in max-plus form: every instruction's result sits at the lowest level of its
//! operands minus the rescales after it, and where rescales go depends on scale degrees only
//! ([`super::rules`]), not on levels. So a site whose input from site `p` arrives at level `l_p`
//! produces its outputs at `min_p (l_p − D[p])` exactly, with `D[p]` measured once per site by
//! propagating depths from each predecessor separately.

use super::rules::{Needs, needs, result_degree};
use cachemir_ir::plan::{CostModel, Instruction, Plan, Register};
use std::collections::HashMap;

/// What a site is for the placement.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// Loads plan input `input`; `state` when it is a KV-cache state read from the last step.
    Source { input: u32, state: bool },
    /// Computes.
    Compute,
    /// Stores plan output `output`; `state_input` is the plan input it becomes at the next step.
    Sink {
        output: u32,
        state_input: Option<u32>,
    },
}

/// One site (see the module documentation).
#[derive(Debug, Clone)]
pub struct SiteNode {
    /// Index into `Plan::sites`.
    pub site: usize,
    /// Instruction range `first..end` in the plan.
    pub first: usize,
    pub end: usize,
    pub role: Role,
    /// `(predecessor node, levels consumed from it)`.
    pub preds: Vec<(usize, u32)>,
    /// Registers of this site read by later sites, in register order.
    pub exports: Vec<Register>,
    /// Ciphertexts it stores (sinks).
    pub stores: usize,
    /// Estimated latency (ms) when the outputs land at level `l`: `cost.0 + cost.1 · l`.
    pub cost: (f64, f64),
}

impl SiteNode {
    /// Ciphertexts a bootstrap of its outputs refreshes: its exports, or what a sink stores.
    pub fn ciphertexts(&self) -> usize {
        match self.role {
            Role::Sink { .. } => self.stores,
            _ => self.exports.len(),
        }
    }

    /// Levels consumed from the deepest input.
    pub fn depth(&self) -> u32 {
        self.preds.iter().map(|p| p.1).max().unwrap_or(0)
    }
}

/// Site graph errors.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SiteError {
    #[error("the plan is already leveled (instruction {0} is `{1}`)")]
    AlreadyLeveled(usize, String),
    #[error("site {0} mixes loads or stores with other instructions")]
    MixedSite(String),
}

/// Builds the site graph of an unleveled plan, nodes in plan order (a topological order).
///
/// # Errors
/// [`SiteError`] for plans that already contain level instructions.
pub fn site_graph(plan: &Plan, cost: &CostModel) -> Result<Vec<SiteNode>, SiteError> {
    for (k, instruction) in plan.instructions.iter().enumerate() {
        if super::rules::is_level_instruction(instruction) {
            return Err(SiteError::AlreadyLeveled(k, instruction.to_string()));
        }
    }
    // Contiguous instruction ranges per site.
    let mut ranges: Vec<(usize, usize, usize)> = Vec::new();
    for (k, &site) in plan.instruction_sites.iter().enumerate() {
        match ranges.last_mut() {
            Some((s, _, end)) if *s == site as usize && *end == k => *end = k + 1,
            _ => ranges.push((site as usize, k, k + 1)),
        }
    }
    let mut writer: Vec<usize> = vec![usize::MAX; plan.registers as usize];
    let mut nodes: Vec<SiteNode> = Vec::with_capacity(ranges.len());
    let state_of_output = |output: u32| {
        let name = &plan.outputs[output as usize].name;
        plan.states
            .iter()
            .find(|s| &s.output == name)
            .and_then(|s| plan.inputs.iter().position(|i| i.name == s.input))
            .map(|i| i as u32)
    };
    for (index, &(site, first, end)) in ranges.iter().enumerate() {
        let instructions = &plan.instructions[first..end];
        let loads: Vec<u32> = instructions
            .iter()
            .filter_map(|i| match i {
                Instruction::Load { input, .. } => Some(input.0),
                _ => None,
            })
            .collect();
        let stores: Vec<u32> = instructions
            .iter()
            .filter_map(|i| match i {
                Instruction::Store { output, .. } => Some(output.0),
                _ => None,
            })
            .collect();
        let role = if let Some(&input) = loads.first() {
            if loads.len() != instructions.len() || loads.iter().any(|&i| i != input) {
                return Err(SiteError::MixedSite(plan.sites[site].name.clone()));
            }
            let name = &plan.inputs[input as usize].name;
            Role::Source {
                input,
                state: plan.states.iter().any(|s| &s.input == name),
            }
        } else if let Some(&output) = stores.first() {
            if stores.iter().any(|&o| o != output) {
                return Err(SiteError::MixedSite(plan.sites[site].name.clone()));
            }
            Role::Sink {
                output,
                state_input: state_of_output(output),
            }
        } else {
            Role::Compute
        };
        let (preds, cost) = analyse(plan, first, end, index, &writer, cost);
        for instruction in instructions {
            for w in instruction.registers().1 {
                writer[w as usize] = index;
            }
        }
        nodes.push(SiteNode {
            site,
            first,
            end,
            role,
            preds,
            exports: Vec::new(),
            stores: stores.len(),
            cost,
        });
    }
    // Exports: registers read outside their site.
    let mut exported = vec![false; plan.registers as usize];
    for (index, node) in nodes.iter().enumerate() {
        for instruction in &plan.instructions[node.first..node.end] {
            for r in instruction.registers().0 {
                let w = writer[r as usize];
                if w != index {
                    exported[r as usize] = true;
                }
            }
        }
    }
    for r in 0..plan.registers {
        if exported[r as usize] {
            let w = writer[r as usize];
            nodes[w].exports.push(r);
        }
    }
    Ok(nodes)
}

/// Depth of one register per predecessor (`None`: does not depend on it) and its degree.
#[derive(Clone)]
struct Local {
    depths: Vec<Option<u32>>,
    degree: u8,
}

/// Levels consumed per predecessor, and the cost line, of the site at instructions
/// `first..end` (node `index`). Depths of registers that no later site reads count too: a
/// conservative bound (the outputs land at or above the predicted level).
fn analyse(
    plan: &Plan,
    first: usize,
    end: usize,
    index: usize,
    writer: &[usize],
    cost: &CostModel,
) -> (Vec<(usize, u32)>, (f64, f64)) {
    let instructions = &plan.instructions[first..end];
    // Predecessors in order of first read.
    let mut preds: Vec<usize> = Vec::new();
    for instruction in instructions {
        for r in instruction.registers().0 {
            let w = writer[r as usize];
            if w != usize::MAX && w != index && !preds.contains(&w) {
                preds.push(w);
            }
        }
    }
    let mut local: HashMap<Register, Local> = HashMap::new();
    let rescale = |l: &mut Local| {
        for d in l.depths.iter_mut().flatten() {
            *d += 1;
        }
        l.degree = 1;
    };
    // Per instruction: (instruction, depth below the inputs, rescales inserted before it).
    let mut operating: Vec<(usize, u32, u32)> = Vec::with_capacity(instructions.len());
    for (offset, instruction) in instructions.iter().enumerate() {
        let (reads, writes) = instruction.registers();
        let mut operands: Vec<Local> = reads
            .iter()
            .map(|r| {
                // Plans from the builder write every register once: written here means local.
                let w = writer[*r as usize];
                match local.get(r) {
                    Some(l) => l.clone(),
                    None => Local {
                        depths: preds.iter().map(|&q| (q == w).then_some(0)).collect(),
                        degree: 1,
                    },
                }
            })
            .collect();
        let mut rescales = 0;
        let want = needs(instruction);
        let mixed =
            operands.iter().any(|o| o.degree == 2) && operands.iter().any(|o| o.degree == 1);
        for (o, r) in operands.iter_mut().zip(&reads) {
            let must = match want {
                Needs::DegreeOne => o.degree == 2,
                Needs::EqualDegrees => mixed && o.degree == 2,
                Needs::Nothing => false,
            };
            if must {
                rescale(o);
                rescales += 1;
                if local.contains_key(r) {
                    local.insert(*r, o.clone());
                }
            }
        }
        let mut depths: Vec<Option<u32>> = vec![None; preds.len()];
        for o in &operands {
            for (d, od) in depths.iter_mut().zip(&o.depths) {
                *d = match (*d, *od) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        let degrees: Vec<u8> = operands.iter().map(|o| o.degree).collect();
        let result = Local {
            depths,
            degree: result_degree(instruction, &degrees),
        };
        let deepest = operands
            .iter()
            .flat_map(|o| o.depths.iter().flatten().copied())
            .max()
            .unwrap_or(0);
        operating.push((first + offset, deepest, rescales));
        for w in writes {
            local.insert(w, result.clone());
        }
    }
    // Δ² results are rescaled at the end of the site.
    let mut consumed = vec![0u32; preds.len()];
    for l in local.values() {
        let extra = u32::from(l.degree == 2);
        for (c, d) in consumed.iter_mut().zip(&l.depths) {
            if let Some(d) = d {
                *c = (*c).max(d + extra);
            }
        }
    }
    let depth = consumed.iter().copied().max().unwrap_or(0);
    // Cost line: an instruction at depth δ below the inputs runs at level l_out + depth − δ.
    let (mut fixed, mut slope) = (0.0, 0.0);
    for &(k, delta, rescales) in &operating {
        let instruction = &plan.instructions[k];
        let at = |level: u32| {
            let own = match instruction {
                Instruction::RotateHoisted { steps, .. } => cost.hoisted(steps.0.len(), level),
                other => cost.instruction(other.mnemonic(), level),
            };
            own + f64::from(rescales) * cost.instruction("rescale", level)
        };
        let offset = depth.saturating_sub(delta);
        let (c0, c1) = (at(offset), at(offset + 1));
        fixed += c0;
        slope += c1 - c0;
    }
    let preds = preds.into_iter().zip(consumed).collect();
    (preds, (fixed, slope))
}
