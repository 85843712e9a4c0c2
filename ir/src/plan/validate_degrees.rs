//! The ciphertext-degree rule of a plan, checked statically by [`Plan::validate`]: which
//! instructions accept a degree-2 ciphertext (three polynomials, the unrelinearized tensor product
//! of `mul.nr`) and which need degree 1 (two polynomials).
//!
//! - **Degree 2 accepted**: `add`, `sub` (a degree-1 operand next to a degree-2 one is promoted:
//!   its third polynomial is zero; the result has the larger degree), `add.p`, `sub.p`, `mul.p`,
//!   `add.s`, `mul.s`, `neg`, `level.down` (the result keeps the operand's degree: each works
//!   polynomial by polynomial; the level pass drops one product of a sum to the level of the
//!   others, as between the polynomial kernel's giant steps) and `free`.
//! - **Degree 2 required**: `relin` (a degree-1 operand has nothing to relinearize).
//! - **Degree 1 required**: everything else — `mul` and `mul.nr` (a product of a degree-2
//!   operand would have degree 3), rotations (the automorphism's key switch handles the s
//!   component only), `rescale` (relinearizing first keeps the key switch's error under the
//!   rescale's division), `boot` and `store` (bootstrapping and the client read two
//!   polynomials).
//!
//! The ciphertext degree is not the scale degree (Δ^d) of [`super::levels`]: a `mul.nr` result
//! has ciphertext degree 2 and scale degree 2; after `relin` it has ciphertext degree 1 and still
//! scale degree 2 until it is rescaled.

use super::{Instruction, Plan, Register};

/// A ciphertext-degree rule broken by one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DegreeRule {
    #[error(
        "r{register} is a degree-2 ciphertext (not relinearized); `{mnemonic}` needs degree 1 \
         (relin first)"
    )]
    NotRelinearized {
        register: Register,
        mnemonic: &'static str,
    },
    #[error("relin of r{register}, a degree-1 ciphertext: nothing to relinearize")]
    NothingToRelinearize { register: Register },
}

/// A ciphertext-degree rule broken at instruction `instruction` (index into
/// [`Plan::instructions`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instruction {instruction} ({text}) at site {site}: {rule}")]
pub struct DegreeError {
    pub instruction: usize,
    /// The instruction as the disassembler prints it.
    pub text: String,
    /// The site's name and source (`name (source)`).
    pub site: String,
    pub rule: DegreeRule,
}

/// Whether `instruction` accepts degree-2 operands and gives its result their largest degree:
/// additions (a degree-1 operand is promoted), plaintext and scalar operations, negation,
/// `level.down` and `free`.
pub fn keeps_degree(instruction: &Instruction) -> bool {
    use Instruction as I;
    matches!(
        instruction,
        I::Add { .. }
            | I::Sub { .. }
            | I::AddPlain { .. }
            | I::SubPlain { .. }
            | I::MultiplyPlain { .. }
            | I::AddScalar { .. }
            | I::MultiplyScalar { .. }
            | I::Negate { .. }
            | I::LevelDown { .. }
            | I::Free { .. }
    )
}

/// The ciphertext degree of `instruction`'s result from its register operands' degrees (in
/// [`Instruction::registers`] order), or the operand that breaks the rule. Instructions that
/// write nothing give degree 1.
///
/// # Errors
/// The first operand whose degree the instruction does not accept.
pub fn result_degree(instruction: &Instruction, operands: &[u8]) -> Result<u8, DegreeRule> {
    use Instruction as I;
    let (reads, _) = instruction.registers();
    let first_above_one = || {
        reads
            .iter()
            .zip(operands)
            .find(|(_, d)| **d > 1)
            .map(|(r, _)| *r)
    };
    if keeps_degree(instruction) {
        return Ok(operands.iter().copied().max().unwrap_or(1));
    }
    match instruction {
        I::Relinearize { a, .. } => match operands.first() {
            Some(2) => Ok(1),
            _ => Err(DegreeRule::NothingToRelinearize { register: a.0 }),
        },
        I::MultiplyNoRelinearize { .. } => match first_above_one() {
            Some(register) => Err(DegreeRule::NotRelinearized {
                register,
                mnemonic: instruction.mnemonic(),
            }),
            None => Ok(2),
        },
        // Loads, stores, products, rotations, rescales and bootstraps (and any instruction
        // added later, until it says otherwise) need relinearized operands.
        _ => match first_above_one() {
            Some(register) => Err(DegreeRule::NotRelinearized {
                register,
                mnemonic: instruction.mnemonic(),
            }),
            None => Ok(1),
        },
    }
}

/// The ciphertext degree each instruction writes (`degrees[k]`; 1 for instructions that write
/// nothing), checking the rule along the way. Assumes registers are written before they are read
/// (the rest of [`Plan::validate`]).
///
/// # Errors
/// The first [`DegreeError`], naming the instruction and its site.
pub fn degrees(plan: &Plan) -> Result<Vec<u8>, DegreeError> {
    let mut registers = vec![1u8; plan.registers as usize];
    let mut written = Vec::with_capacity(plan.instructions.len());
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let (reads, writes) = instruction.registers();
        let operands: Vec<u8> = reads
            .iter()
            .map(|&r| registers.get(r as usize).copied().unwrap_or(1))
            .collect();
        let degree = result_degree(instruction, &operands).map_err(|rule| DegreeError {
            instruction: k,
            text: instruction.to_string(),
            site: plan
                .instruction_sites
                .get(k)
                .and_then(|&s| plan.sites.get(s as usize))
                .map_or_else(String::new, |s| format!("{} ({})", s.name, s.source)),
            rule,
        })?;
        for w in writes {
            if let Some(slot) = registers.get_mut(w as usize) {
                *slot = degree;
            }
        }
        written.push(degree);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Layout;
    use crate::plan::PlanError;
    use crate::plan::builder::PlanBuilder;

    /// `x`, `y` loaded; the caller appends instructions and stores into `out`.
    fn frame() -> (PlanBuilder, Register, Register, u32) {
        let layout = Layout::row_major(&[4], 8);
        let mut b = PlanBuilder::new("degrees", 8);
        let (x, y) = (b.input("x", &layout, None), b.input("y", &layout, None));
        let out = b.output("out", &layout, None);
        b.site("attention", "node_7", Some(0));
        let (x, y) = (b.load(x, 0), b.load(y, 0));
        (b, x, y, out)
    }

    #[test]
    fn a_sum_of_unrelinearized_products_relinearized_once_is_valid() {
        let (mut b, x, y, out) = frame();
        let xy = b.multiply_no_relinearize(x, y);
        let xx = b.multiply_no_relinearize(x, x);
        let sum = b.add(xy, xx);
        // A degree-1 operand is promoted; plaintext-free unary operations keep degree 2.
        let sum = b.sub(sum, y);
        let sum = b.add_scalar(sum, 0.5);
        let sum = b.negate(sum);
        let sum = b.multiply_scalar(sum, 2.0);
        let sum = b.level_down(sum, 0);
        let relinearized = b.relinearize(sum);
        let rotated = b.rotate(relinearized, 1);
        b.store(rotated, out, 0);
        let plan = b.build();
        plan.validate().unwrap();
        assert_eq!(
            degrees(&plan).unwrap(),
            [1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1]
        );
        assert_eq!(plan.counts()["mul.nr"], 2);
        assert_eq!(plan.counts()["relin"], 1);
        let text = plan.disassemble();
        assert!(text.contains("     2  mul.nr r2, r0, r1\n"), "{text}");
        assert!(text.contains("    10  relin r10, r9\n"), "{text}");
        // Binary and JSON forms carry the new instructions.
        let back = Plan::from_bytes(&plan.to_bytes().unwrap()).unwrap();
        assert_eq!(back, plan);
        let json = serde_json::to_string(&plan).unwrap();
        assert!(json.contains("\"MultiplyNoRelinearize\"") && json.contains("\"Relinearize\""));
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
    }

    /// Feeds the degree-2 product of `x` and `y` to `use_it` and returns the validation error.
    fn rejected(use_it: impl FnOnce(&mut PlanBuilder, Register, u32)) -> DegreeError {
        let (mut b, x, y, out) = frame();
        let product = b.multiply_no_relinearize(x, y);
        use_it(&mut b, product, out);
        match b.build().validate() {
            Err(PlanError::Degree(e)) => e,
            other => panic!("expected a degree error, got {other:?}"),
        }
    }

    #[test]
    fn degree_two_values_are_rejected_where_degree_one_is_needed() {
        let not_relinearized = |mnemonic| DegreeRule::NotRelinearized {
            register: 2,
            mnemonic,
        };
        let e = rejected(|b, p, _| {
            b.rotate(p, 1);
        });
        assert_eq!((e.instruction, e.rule), (3, not_relinearized("rot")));
        assert_eq!(
            e.to_string(),
            "instruction 3 (rot r3, r2, 1) at site attention (node_7): r2 is a degree-2 \
             ciphertext (not relinearized); `rot` needs degree 1 (relin first)"
        );
        let e = rejected(|b, p, _| {
            b.rotate_hoisted(p, &[1, 2]);
        });
        assert_eq!(e.rule, not_relinearized("rot.h"));
        let e = rejected(|b, p, _| {
            b.rescale(p);
        });
        assert_eq!(e.rule, not_relinearized("rescale"));
        let e = rejected(|b, p, _| {
            b.bootstrap(p, 8, 0, 1.0);
        });
        assert_eq!(e.rule, not_relinearized("boot"));
        let e = rejected(|b, p, out| b.store(p, out, 0));
        assert_eq!(e.rule, not_relinearized("store"));
        let e = rejected(|b, p, _| {
            b.multiply(0, p);
        });
        assert_eq!(e.rule, not_relinearized("mul"));
        let e = rejected(|b, p, _| {
            b.multiply_no_relinearize(p, p);
        });
        assert_eq!(e.rule, not_relinearized("mul.nr"));
        // A sum with a degree-2 term is degree 2 too.
        let e = rejected(|b, p, _| {
            let s = b.add(0, p);
            b.rotate(s, 1);
        });
        assert_eq!(
            e.rule,
            DegreeRule::NotRelinearized {
                register: 3,
                mnemonic: "rot"
            }
        );
        // Relinearizing twice: the second has nothing to do.
        let e = rejected(|b, p, _| {
            let once = b.relinearize(p);
            b.relinearize(once);
        });
        assert_eq!(
            (e.instruction, e.rule),
            (4, DegreeRule::NothingToRelinearize { register: 3 })
        );
    }
}
