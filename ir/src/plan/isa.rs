//! The plan's instruction set, listed once in the `instructions!` table below: the enum (whose serde derive is the
//! postcard and JSON encoding), the mnemonics, the register reads and writes (for validation and
//! liveness) and the disassembler all come from that table (the pattern of Cranelift's Pulley).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A virtual register holding one ciphertext.
pub type Register = u32;

/// An operand field of an instruction: what it reads and writes, and how it prints.
pub trait Operand {
    fn visit(&self, reads: &mut Vec<Register>, writes: &mut Vec<Register>);
    fn print(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// Renames the registers the operand reads (`read`) and writes (`write`).
    fn rename(
        &mut self,
        _read: &mut dyn FnMut(Register) -> Register,
        _write: &mut dyn FnMut(Register) -> Register,
    ) {
    }
}

/// The register an instruction writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dst(pub Register);
/// A register an instruction reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Src(pub Register);
/// Several registers an instruction writes (a hoisted rotation group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dsts(pub Vec<Register>);
/// An index into the plan's plaintext table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plain(pub u32);
/// An index into the plan's encrypted inputs or outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Io(pub u32);
/// Which ciphertext of a multi-ciphertext tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part(pub u32);
/// A left rotation by this many slots (negative: right).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step(pub i32);
/// Left rotations of one ciphertext, one per destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps(pub Vec<i32>);
/// A real constant applied to every slot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scalar(pub f64);
/// A slot count (bootstrapping of sparsely packed ciphertexts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slots(pub u32);
/// A ciphertext level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level(pub u32);

impl Operand for Dst {
    fn visit(&self, _: &mut Vec<Register>, writes: &mut Vec<Register>) {
        writes.push(self.0);
    }
    fn rename(
        &mut self,
        _: &mut dyn FnMut(Register) -> Register,
        write: &mut dyn FnMut(Register) -> Register,
    ) {
        self.0 = write(self.0);
    }
    fn print(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl Operand for Src {
    fn visit(&self, reads: &mut Vec<Register>, _: &mut Vec<Register>) {
        reads.push(self.0);
    }
    fn rename(
        &mut self,
        read: &mut dyn FnMut(Register) -> Register,
        _: &mut dyn FnMut(Register) -> Register,
    ) {
        self.0 = read(self.0);
    }
    fn print(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl Operand for Dsts {
    fn visit(&self, _: &mut Vec<Register>, writes: &mut Vec<Register>) {
        writes.extend(&self.0);
    }
    fn rename(
        &mut self,
        _: &mut dyn FnMut(Register) -> Register,
        write: &mut dyn FnMut(Register) -> Register,
    ) {
        for r in &mut self.0 {
            *r = write(*r);
        }
    }
    fn print(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.0.iter().map(|r| format!("r{r}")).collect();
        write!(f, "[{}]", names.join(", "))
    }
}

impl Operand for Steps {
    fn visit(&self, _: &mut Vec<Register>, _: &mut Vec<Register>) {}
    fn print(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

macro_rules! plain_operand {
    ($($ty:ident => $fmt:literal),* $(,)?) => {$(
        impl Operand for $ty {
            fn visit(&self, _: &mut Vec<Register>, _: &mut Vec<Register>) {}
            fn print(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, $fmt, self.0)
            }
        }
    )*};
}

plain_operand!(Plain => "p{}", Io => "io{}", Part => "#{}", Step => "{}", Scalar => "{:e}", Slots => "slots={}", Level => "level={}");

macro_rules! instructions {
    ($($(#[$doc:meta])* $name:ident = $mnemonic:literal { $($field:ident : $kind:ident),* }),* $(,)?) => {
        /// One plan instruction over virtual registers.
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub enum Instruction {
            $($(#[$doc])* $name { $($field: $kind),* },)*
        }

        impl Instruction {
            /// The assembler mnemonic.
            pub fn mnemonic(&self) -> &'static str {
                match self { $(Instruction::$name { .. } => $mnemonic,)* }
            }

            /// Every mnemonic, in table order.
            pub const MNEMONICS: &'static [&'static str] = &[$($mnemonic),*];

            /// Registers read and written.
            pub fn registers(&self) -> (Vec<Register>, Vec<Register>) {
                let (mut reads, mut writes) = (Vec::new(), Vec::new());
                match self {
                    $(Instruction::$name { $($field),* } => {
                        $(Operand::visit($field, &mut reads, &mut writes);)*
                    })*
                }
                (reads, writes)
            }
        }

        impl Instruction {
            /// Renames every register: reads through `read` (in operand order), then writes
            /// through `write` (in operand order; a hoisted group's destinations in order).
            pub fn rename_registers(
                &mut self,
                read: &mut dyn FnMut(Register) -> Register,
                write: &mut dyn FnMut(Register) -> Register,
            ) {
                let mut no_write = |r: Register| r;
                let mut no_read = |r: Register| r;
                match self {
                    $(Instruction::$name { $($field),* } => {
                        $(Operand::rename($field, read, &mut no_write);)*
                        $(Operand::rename($field, &mut no_read, write);)*
                    })*
                }
            }
        }

        impl fmt::Display for Instruction {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $(Instruction::$name { $($field),* } => {
                        f.write_str($mnemonic)?;
                        let mut _first = true;
                        $(
                            f.write_str(if _first { " " } else { ", " })?;
                            _first = false;
                            Operand::print($field, f)?;
                        )*
                        Ok(())
                    })*
                }
            }
        }
    };
}

instructions! {
    /// Ciphertext `part` of encrypted input `input` (inputs and KV-cache states).
    Load = "load" { dst: Dst, input: Io, part: Part },
    /// Writes a register to ciphertext `part` of encrypted output `output`.
    Store = "store" { src: Src, output: Io, part: Part },
    /// `dst = a + b`.
    Add = "add" { dst: Dst, a: Src, b: Src },
    /// `dst = a − b`.
    Sub = "sub" { dst: Dst, a: Src, b: Src },
    /// `dst = a · b` slot-wise, relinearized (the tensor product, then one key switch with the
    /// relinearization key).
    Multiply = "mul" { dst: Dst, a: Src, b: Src },
    /// `dst = a · b` slot-wise without relinearization: the tensor product, a ciphertext of
    /// degree 2 (three polynomials, decrypting under (1, s, s²)). Additions, subtractions and
    /// plaintext or scalar operations accept it; everything else needs `relin` first
    /// ([`super::validate_degrees`]). A sum of such products relinearizes once (lazy
    /// relinearization; H. Chen, "Optimizing relinearization in circuits for homomorphic
    /// encryption", arXiv:1711.06319, 2017).
    MultiplyNoRelinearize = "mul.nr" { dst: Dst, a: Src, b: Src },
    /// Relinearizes a degree-2 ciphertext back to degree 1: one key switch (of its s² component)
    /// with the relinearization key; level and scale unchanged.
    Relinearize = "relin" { dst: Dst, a: Src },
    /// `dst = a + p` with plaintext `p`.
    AddPlain = "add.p" { dst: Dst, a: Src, plaintext: Plain },
    /// `dst = a − p`.
    SubPlain = "sub.p" { dst: Dst, a: Src, plaintext: Plain },
    /// `dst = a · p` slot-wise.
    MultiplyPlain = "mul.p" { dst: Dst, a: Src, plaintext: Plain },
    /// `dst = a + c` in every slot (empty slots included).
    AddScalar = "add.s" { dst: Dst, a: Src, value: Scalar },
    /// `dst = c · a`.
    MultiplyScalar = "mul.s" { dst: Dst, a: Src, value: Scalar },
    /// `dst = −a`.
    Negate = "neg" { dst: Dst, a: Src },
    /// `dst[s] = a[s + step]` (a left rotation; one key switch).
    Rotate = "rot" { dst: Dst, a: Src, step: Step },
    /// `dsts[k][s] = a[s + steps[k]]`, sharing one decomposition of `a` (hoisting; Halevi–Shoup,
    /// CRYPTO 2018, §5).
    RotateHoisted = "rot.h" { dsts: Dsts, a: Src, steps: Steps },
    /// Divides by the last prime: one level down, scale / q_level.
    Rescale = "rescale" { dst: Dst, a: Src },
    /// Drops to `level` without changing the scale.
    LevelDown = "level.down" { dst: Dst, a: Src, level: Level },
    /// Refreshes `a` (|slots| ≤ 1) to `level`, for a ciphertext using `slots` slots, and
    /// multiplies the result by `scale` (folded into SlotsToCoeffs' matrices: no level), which
    /// undoes the pre-scaling that brought the input into [−1, 1].
    Bootstrap = "boot" { dst: Dst, a: Src, slots: Slots, level: Level, scale: Scalar },
    /// Frees a register (its last use has passed).
    Free = "free" { a: Src },
}
