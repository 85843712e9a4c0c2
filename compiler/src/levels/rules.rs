//! How the level pass satisfies the level rules of `cachemir_ir::plan::parameters` for one
//! instruction: which Δ² operands it rescales first (lazy rescaling: a product stays at Δ² until
//! something needs Δ, so sums of products — the matrix–vector kernels' inner loops — share one
//! rescale) and the scale degree of the result. The analysis (`sites`) and the emission (`emit`)
//! both follow these, so the depths the placement optimises are the depths emitted.

use cachemir_ir::plan::Instruction;

/// Which operands must be at scale Δ before the instruction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing (the instruction keeps its operand's scale).
    Nothing,
    /// Every operand at Δ (products, stores, bootstraps).
    DegreeOne,
    /// Equal scales: a Δ² operand next to a Δ one is rescaled (additions).
    EqualDegrees,
}

/// The requirement of `instruction` on its operands.
pub fn needs(instruction: &Instruction) -> Needs {
    use Instruction as I;
    match instruction {
        I::Multiply { .. }
        | I::MultiplyNoRelinearize { .. }
        | I::MultiplyPlain { .. }
        | I::MultiplyScalar { .. }
        | I::Store { .. } => Needs::DegreeOne,
        I::Add { .. } | I::Sub { .. } => Needs::EqualDegrees,
        _ => Needs::Nothing,
    }
}

/// Whether the instruction's register operands must be at one level (binary ciphertext ops).
pub fn aligns_levels(instruction: &Instruction) -> bool {
    matches!(
        instruction,
        Instruction::Add { .. }
            | Instruction::Sub { .. }
            | Instruction::Multiply { .. }
            | Instruction::MultiplyNoRelinearize { .. }
    )
}

/// The scale degree of the result, given the operands' degrees after [`needs`] was satisfied.
pub fn result_degree(instruction: &Instruction, operands: &[u8]) -> u8 {
    use Instruction as I;
    match instruction {
        I::Load { .. } => 1,
        I::Multiply { .. }
        | I::MultiplyNoRelinearize { .. }
        | I::MultiplyPlain { .. }
        | I::MultiplyScalar { .. } => 2,
        _ => operands.first().copied().unwrap_or(1),
    }
}

/// Whether `instruction` belongs to a plan that is already leveled (the pass takes plans straight
/// from the lowering).
pub fn is_level_instruction(instruction: &Instruction) -> bool {
    matches!(
        instruction,
        Instruction::Rescale { .. } | Instruction::LevelDown { .. } | Instruction::Bootstrap { .. }
    )
}
