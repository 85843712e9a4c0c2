//! The polynomial ring R_Q = Z_Q\[X\]/(X^N + 1) in RNS form: word-size moduli, negacyclic NTT
//! (`tfhe-ntt`), RNS polynomials, fast basis conversion, CRT reconstruction and automorphisms.

pub mod automorphism;
pub mod basis;
pub(crate) mod basis_ifma;
pub mod crt;
pub mod modulus;
pub mod ntt;
pub mod poly;
