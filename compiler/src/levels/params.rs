//! Named bootstrappable parameter sets (defined with the plan format, `cachemir_ir::plan::
//! parameters`, so clients and runtimes read the same table).

pub use cachemir_ir::plan::parameters::{by_name, named};
