//! Cachemir plan VM: executes plans on a backend. `sim` runs cleartext slot vectors (the fast way
//! to test the compiler); the CKKS `cpu` backend and sessions come with issue 9.

pub mod sim;
