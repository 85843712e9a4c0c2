//! Relinearization placement (lazy where it pays): a sum of ciphertext products relinearizes once
//! after the sum instead of once per product.
//!
//! The lowering and the level pass emit every ciphertext product as `mul` (tensor product, then a
//! relinearization key switch). Where several products are only added together before anything
//! needs a relinearized ciphertext — attention's score and weighted-value products summed over
//! the cache ciphertexts, the polynomial kernel's giant-step products (one of them dropped to
//! the others' level), in a leveled plan all at Δ² until the one rescale of the sum — this pass
//! keeps the products unrelinearized (`mul.nr`, degree 2) and inserts one `relin` after the sum. Each such sum of k products saves k − 1 key
//! switches, at the price of additions over three polynomials instead of two.
//!
//! **Algorithm** (the polynomial case of H. Chen, "Optimizing relinearization in circuits for
//! homomorphic encryption", arXiv:1711.06319, 2017, where every value has one reader, which the
//! general problem — NP-hard — is restricted to here): a degree-2 value may flow into an
//! instruction that accepts degree 2 (`add`, `sub`, `add.p`, `sub.p`, `mul.p`, `add.s`, `mul.s`,
//! `neg`, `level.down`; `cachemir_ir::plan::validate_degrees`) only when that instruction is its single reader
//! (`free` aside). These edges form a forest whose leaves are the products; each tree is
//! relinearized once, right after its root (the value with another reader, several readers or
//! an instruction that needs degree 1), and made lazy only when it holds at least two products:
//! a tree of one product would trade one key switch for one key switch and heavier additions.
//! Fan-out (a product read twice) stops a tree, so the result never has more relinearizations
//! than the input, and every value computes the same slots: only where the key switch happens
//! changes.
//!
//! The pass expects every register written once (plans from the level pass, before
//! [`crate::schedule`] reuses registers); a plan with a register written twice is returned
//! unchanged.

use cachemir_ir::plan::{Dst, Instruction, Plan, RangeCheck, Register, Src, validate_degrees};

/// Relinearizations before and after the pass (each `mul` counts one, each `relin` one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelinearizationCounts {
    /// Relinearizations of the input plan.
    pub before: usize,
    /// Relinearizations of the output plan.
    pub after: usize,
    /// Sums relinearized once (trees of at least two products).
    pub lazy_sums: usize,
}

impl RelinearizationCounts {
    /// Key switches saved: `before − after`.
    pub fn saved(&self) -> usize {
        self.before - self.after
    }
}

/// A plan with lazy relinearization and its counts.
#[derive(Debug, Clone)]
pub struct Relinearized {
    pub plan: Plan,
    pub counts: RelinearizationCounts,
}

/// Relinearizations in `plan`: every `mul` and every `relin`.
pub fn relinearizations(plan: &Plan) -> usize {
    plan.instructions
        .iter()
        .filter(|i| {
            matches!(
                i,
                Instruction::Multiply { .. } | Instruction::Relinearize { .. }
            )
        })
        .count()
}

/// Whether `instruction` accepts a degree-2 operand and writes one register with the operand's
/// degree ([`validate_degrees::keeps_degree`] but `free`, which writes nothing).
fn keeps_degree(instruction: &Instruction) -> bool {
    validate_degrees::keeps_degree(instruction) && !matches!(instruction, Instruction::Free { .. })
}

/// `plan` with lazy relinearization where it pays (see the module documentation).
pub fn lazy(plan: &Plan) -> Relinearized {
    let before = relinearizations(plan);
    let unchanged = || Relinearized {
        plan: plan.clone(),
        counts: RelinearizationCounts {
            before,
            after: before,
            lazy_sums: 0,
        },
    };
    let n = plan.instructions.len();
    let registers = plan.registers as usize;
    // writer[r]: the instruction writing r; readers[r]: instructions reading r (once each).
    let mut writer: Vec<Option<usize>> = vec![None; registers];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); registers];
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let (reads, writes) = instruction.registers();
        if !matches!(instruction, Instruction::Free { .. }) {
            for r in reads {
                let list = &mut readers[r as usize];
                if list.last() != Some(&k) && !list.contains(&k) {
                    list.push(k);
                }
            }
        }
        for w in writes {
            if writer[w as usize].replace(k).is_some() {
                return unchanged();
            }
        }
    }
    let single_dst = |k: usize| -> Option<Register> {
        match plan.instructions[k].registers().1.as_slice() {
            [w] => Some(*w),
            _ => None,
        }
    };
    // parent[r]: the value r flows into while it may stay degree 2; lazy[r]: r may be degree 2
    // (a product, or a degree-keeping instruction with a lazy operand it is the single reader
    // of). Instructions come in order, so operands are decided before their readers.
    let mut lazy = vec![false; registers];
    let mut parent: Vec<Option<Register>> = vec![None; registers];
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let Some(dst) = single_dst(k) else { continue };
        if matches!(instruction, Instruction::Multiply { .. }) {
            lazy[dst as usize] = true;
        } else if keeps_degree(instruction) {
            for r in instruction.registers().0 {
                if lazy[r as usize] && readers[r as usize] == [k] {
                    parent[r as usize] = Some(dst);
                    lazy[dst as usize] = true;
                }
            }
        }
    }
    // Each tree's root and its products.
    let root_of = |mut r: Register| {
        while let Some(p) = parent[r as usize] {
            r = p;
        }
        r
    };
    let mut products_under: Vec<Vec<usize>> = vec![Vec::new(); registers];
    for (k, instruction) in plan.instructions.iter().enumerate() {
        if let (Instruction::Multiply { .. }, Some(dst)) = (instruction, single_dst(k)) {
            products_under[root_of(dst) as usize].push(k);
        }
    }
    let mut deferred = vec![false; n];
    // relin_after[k]: the root instruction k writes is relinearized right after it.
    let mut relin_after: Vec<Option<Register>> = vec![None; n];
    let mut lazy_sums = 0;
    for (root, products) in products_under.iter().enumerate() {
        if products.len() < 2 {
            continue;
        }
        lazy_sums += 1;
        for &k in products {
            deferred[k] = true;
        }
        if !readers[root].is_empty()
            && let Some(k) = writer[root]
        {
            relin_after[k] = Some(root as Register);
        }
    }
    if lazy_sums == 0 {
        return unchanged();
    }

    let mut out = Plan {
        instructions: Vec::with_capacity(n + lazy_sums),
        instruction_sites: Vec::with_capacity(n + lazy_sums),
        ..plan.clone()
    };
    // Reads of a relinearized root go to its `relin` result.
    let mut renamed: Vec<Option<Register>> = vec![None; registers];
    let mut new_index = vec![0u32; n];
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let mut instruction = match instruction {
            Instruction::Multiply { dst, a, b } if deferred[k] => {
                Instruction::MultiplyNoRelinearize {
                    dst: *dst,
                    a: *a,
                    b: *b,
                }
            }
            other => other.clone(),
        };
        if !matches!(instruction, Instruction::Free { .. }) {
            instruction.rename_registers(&mut |r| renamed[r as usize].unwrap_or(r), &mut |r| r);
        }
        out.instructions.push(instruction);
        out.instruction_sites.push(plan.instruction_sites[k]);
        new_index[k] = (out.instructions.len() - 1) as u32;
        if let Some(root) = relin_after[k] {
            let dst = out.registers;
            out.registers += 1;
            out.instructions.push(Instruction::Relinearize {
                dst: Dst(dst),
                a: Src(root),
            });
            out.instruction_sites.push(plan.instruction_sites[k]);
            renamed[root as usize] = Some(dst);
        }
    }
    out.checks = plan
        .checks
        .iter()
        .map(|c| RangeCheck {
            after: new_index[c.after as usize],
            ..c.clone()
        })
        .collect();
    let after = relinearizations(&out);
    Relinearized {
        plan: out,
        counts: RelinearizationCounts {
            before,
            after,
            lazy_sums,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ir::layout::Layout;
    use cachemir_ir::plan::TensorRef;
    use cachemir_ir::plan::builder::PlanBuilder;
    use std::collections::HashMap;

    const SLOTS: usize = 8;

    /// Inputs `x`, `y` loaded (registers 0 and 1), one output; unleveled.
    fn frame() -> (PlanBuilder, Register, Register, u32) {
        let layout = Layout::row_major(&[SLOTS], SLOTS);
        let mut b = PlanBuilder::new("relinearize", SLOTS);
        let (x, y) = (b.input("x", &layout, None), b.input("y", &layout, None));
        let out = b.output("out", &layout, None);
        b.site("sum", "test", Some(0));
        let (x, y) = (b.load(x, 0), b.load(y, 0));
        (b, x, y, out)
    }

    /// Runs `plan` and its lazy form on `sim`; asserts the same outputs and a valid lazy plan.
    fn lazy_checked(plan: &Plan) -> Relinearized {
        let result = lazy(plan);
        result.plan.validate().unwrap();
        assert_eq!(
            result.counts.before - result.counts.saved(),
            relinearizations(&result.plan)
        );
        let inputs = vec![
            vec![(0..SLOTS).map(|i| 0.1 * i as f64 - 0.3).collect()],
            vec![(0..SLOTS).map(|i| 0.5 - 0.07 * i as f64).collect()],
        ];
        let tensors: HashMap<TensorRef, Vec<f64>> = HashMap::new();
        let eager = cachemir_vm::sim::execute(plan, &tensors, &inputs).unwrap();
        let lazy = cachemir_vm::sim::execute(&result.plan, &tensors, &inputs).unwrap();
        assert_eq!(eager, lazy);
        result
    }

    fn count(plan: &Plan, mnemonic: &str) -> usize {
        plan.counts().get(mnemonic).copied().unwrap_or(0)
    }

    #[test]
    fn a_sum_of_four_products_relinearizes_once() {
        let (mut b, x, y, out) = frame();
        let products = [
            b.multiply(x, y),
            b.multiply(x, x),
            b.multiply(y, y),
            b.multiply(y, x),
        ];
        let mut s = b.add(products[0], products[1]);
        s = b.sub(s, products[2]);
        s = b.add(s, products[3]);
        // Degree-keeping instructions extend the sum; the store needs degree 1.
        s = b.add_scalar(s, 0.5);
        s = b.negate(s);
        b.store(s, out, 0);
        let plan = b.build();
        let result = lazy_checked(&plan);
        assert_eq!(
            result.counts,
            RelinearizationCounts {
                before: 4,
                after: 1,
                lazy_sums: 1
            }
        );
        assert_eq!(result.counts.saved(), 3);
        let lazy = &result.plan;
        assert_eq!((count(lazy, "mul"), count(lazy, "mul.nr")), (0, 4));
        assert_eq!(count(lazy, "relin"), 1);
        // The relinearization follows the last degree-keeping instruction; the store reads it.
        let text = lazy.disassemble();
        assert!(
            text.ends_with(
                "    10  neg r10, r9\n    11  relin r11, r10\n    12  store r11, io0, #0\n"
            ),
            "{text}"
        );
        assert_eq!(lazy.registers, plan.registers + 1);
    }

    #[test]
    fn products_read_twice_or_alone_stay_eager() {
        let (mut b, x, y, out) = frame();
        // `shared` is read by two sums: relinearizing it once serves both (no gain from laziness),
        // which leaves each sum one product of its own.
        let shared = b.multiply(x, y);
        let other = b.multiply(x, x);
        let first = b.add(shared, other);
        let second = b.add(shared, y);
        // A product rotated alone: its relinearization cannot be shared.
        let third = b.multiply(y, y);
        let rotated = b.rotate(third, 1);
        let s = b.add(first, second);
        let s = b.add(s, rotated);
        b.store(s, out, 0);
        let plan = b.build();
        let result = lazy_checked(&plan);
        assert_eq!(
            result.counts,
            RelinearizationCounts {
                before: 3,
                after: 3,
                lazy_sums: 0
            }
        );
        assert_eq!(result.plan, plan);
    }

    #[test]
    fn a_sum_read_by_several_instructions_is_relinearized_once_for_all() {
        let (mut b, x, y, out) = frame();
        let (p, q, r) = (b.multiply(x, y), b.multiply(x, x), b.multiply(y, y));
        let s = b.add(p, q);
        let s = b.add(s, r);
        // The range check on the degree-2 sum follows the instructions' new indices.
        b.check(RangeCheck {
            after: 6,
            register: s,
            site: 0,
            low: -10.0,
            high: 10.0,
            occupied: vec![],
        });
        let rotated = b.rotate_hoisted(s, &[1, 2]);
        let t = b.add(rotated[0], rotated[1]);
        let t = b.add(t, s);
        // A second, independent sum of two products in the same plan, one dropped a level first.
        let (u, v) = (b.multiply(t, x), b.multiply(t, y));
        let u = b.level_down(u, 0);
        let w = b.sub(u, v);
        b.free(s);
        b.store(w, out, 0);
        let plan = b.build();
        let result = lazy_checked(&plan);
        assert_eq!(
            result.counts,
            RelinearizationCounts {
                before: 5,
                after: 2,
                lazy_sums: 2
            }
        );
        let lazy = &result.plan;
        assert_eq!(count(lazy, "mul.nr"), 5);
        assert!(
            lazy.disassemble().contains("     7  relin r"),
            "{}",
            lazy.disassemble()
        );
        assert_eq!(lazy.checks[0].after, 6);
        assert_eq!(lazy.checks[0].register, s);
        // The hoisted rotation and the later sum read the relinearized value; `free` keeps the
        // register it freed.
        let relinearized = plan.registers;
        assert!(matches!(
            &lazy.instructions[8],
            Instruction::RotateHoisted { a, .. } if a.0 == relinearized
        ));
        assert!(
            lazy.instructions
                .iter()
                .any(|i| matches!(i, Instruction::Free { a } if a.0 == s))
        );
    }

    #[test]
    fn a_register_written_twice_leaves_the_plan_unchanged() {
        let (mut b, x, y, out) = frame();
        let (p, q) = (b.multiply(x, y), b.multiply(x, x));
        let s = b.add(p, q);
        b.store(s, out, 0);
        let mut plan = b.build();
        // Rewrite `q` into `p`'s register: p is written twice.
        if let Instruction::Multiply { dst, .. } = &mut plan.instructions[3] {
            dst.0 = p;
        }
        let result = lazy(&plan);
        assert_eq!(result.counts.saved(), 0);
        assert_eq!(result.plan, plan);
    }
}
