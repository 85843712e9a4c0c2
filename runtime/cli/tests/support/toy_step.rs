//! The frame of the CLI tests' hand-built decode steps at ToyBootN12 (N = 2^12, insecure, tests
//! only): a `[4]` vector `x` and a KV-cache state `past` → `present`.

// Each test target includes this module and uses a part of it.
#![allow(dead_code)]

use cachemir_ir::layout::Layout;
use cachemir_ir::plan::builder::PlanBuilder;
use cachemir_ir::plan::{Register, parameters};

/// ToyBootN12's full packing.
pub const TOY_SLOTS: usize = 2048;

/// A decode step under construction, its inputs loaded.
#[derive(Debug)]
pub struct ToyStep {
    pub builder: PlanBuilder,
    /// ToyBootN12's level after bootstrapping, where `x`, `past` and `present` are.
    pub level: u32,
    /// The registers `x` and `past` are loaded into.
    pub x: Register,
    pub past: Register,
    /// The output indices of `y` (at `level − 1`) and `present` (at `level`).
    pub y: u32,
    pub present: u32,
}

impl ToyStep {
    /// The plan `name` at ToyBootN12 with the weights file `weights`: inputs `x` and `past`
    /// (loaded, in that order), outputs `y` and `present`, the state `past` → `present`, one site
    /// (`step`, layer 0).
    ///
    /// # Panics
    /// If ToyBootN12 is not a bootstrappable named set (a test failure).
    pub fn new(name: &str, weights: &str) -> Self {
        let parameters = parameters::by_name("ToyBootN12").expect("ToyBootN12 is a named set");
        let level = parameters.bootstrap_level.expect("bootstrappable");
        let vector = Layout::row_major(&[4], TOY_SLOTS);
        let mut builder = PlanBuilder::new(name, TOY_SLOTS);
        builder
            .parameters(parameters)
            .weights(weights)
            .state("past", "present");
        let x = builder.input("x", &vector, Some(level));
        let past = builder.input("past", &vector, Some(level));
        let y = builder.output("y", &vector, Some(level - 1));
        let present = builder.output("present", &vector, Some(level));
        builder.site("step", "test", Some(0));
        ToyStep {
            x: builder.load(x, 0),
            past: builder.load(past, 0),
            builder,
            level,
            y,
            present,
        }
    }
}
