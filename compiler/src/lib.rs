//! Cachemir compiler: passes from Tensor IR to scheduled CKKS plans (filled by later issues),
//! and the reference-evaluation tools `cachemirc import` / `cachemirc eval` build on.

pub mod approx;
pub mod generation;
pub mod levels;
pub mod lower;
pub mod passes;
pub mod reference;
pub mod report;
pub mod rewrite;
pub mod schedule;
