//! Kernels: each expands one tensor operation into ciphertext instructions for given layouts, with
//! its rotation and multiplication counts stated in its docstring and tested.
pub mod convert;
pub mod matvec;
pub mod polynomial;
pub mod reduce;
