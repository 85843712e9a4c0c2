//! The backend interface: one trait over an opaque ciphertext handle, implemented by `sim`
//! (cleartext slots), `cpu` (CKKS, issue 9) and `cuda`.
//!
//! Every operation reads its operands by reference and returns a new ciphertext; the
//! [`Vm`](crate::Vm) owns the registers and drops each value after its last use. Plaintext operands come
//! as slot vectors ([`PlainSlots`]) that the VM builds from the plan's weights; a CKKS backend
//! encodes them at the level and scale of the ciphertext they meet (and may cache encodings by
//! [`PlainSlots::index`]).

/// A failed backend operation. The VM adds the instruction index, its disassembly and its site.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackendError {
    /// Operands that cannot be combined (slot counts, levels or scales that differ).
    #[error("operands do not match: {0}")]
    Mismatch(String),
    /// An operation or parameter this backend does not provide (e.g. a missing rotation key).
    #[error("not supported by the {backend} backend: {what}")]
    Unsupported { backend: &'static str, what: String },
    /// Levels exhausted, a bootstrap input out of range, or any other failure.
    #[error("{0}")]
    Failed(String),
}

/// A plaintext operand: the slot vector (`slots` reals, zero where the plan leaves slots empty)
/// and its index in the plan's plaintext table, stable across runs (a cache key for encodings).
#[derive(Debug, Clone, Copy)]
pub struct PlainSlots<'a> {
    pub index: u32,
    pub values: &'a [f64],
}

/// What a backend knows of a ciphertext's bookkeeping, for reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CiphertextInfo {
    /// Multiplicative depth consumed since encryption or the last bootstrap, where tracked.
    pub depth: Option<u32>,
    /// The ciphertext level (remaining primes minus one), where known.
    pub level: Option<u32>,
    /// log2 of the scale, in bits.
    pub scale_bits: f64,
}

/// The server-side CKKS instruction set over an opaque ciphertext handle.
///
/// Rotation steps are left rotations (`dst[s] = a[(s + step) mod slots]`, negative steps rotate
/// right). Methods take `&self` so a backend can be shared by threads; backends keep statistics
/// or caches behind interior mutability.
pub trait Backend {
    /// One ciphertext of `slots()` slots.
    type Ciphertext: Clone;

    /// The backend's name (`sim`, `cpu`, `cuda`), for messages.
    fn name(&self) -> &'static str;

    /// Slots per ciphertext.
    fn slots(&self) -> usize;

    /// `a + b` slot-wise.
    fn add(
        &self,
        a: &Self::Ciphertext,
        b: &Self::Ciphertext,
    ) -> Result<Self::Ciphertext, BackendError>;

    /// `a − b` slot-wise.
    fn sub(
        &self,
        a: &Self::Ciphertext,
        b: &Self::Ciphertext,
    ) -> Result<Self::Ciphertext, BackendError>;

    /// `a · b` slot-wise, relinearized (not rescaled).
    fn mul(
        &self,
        a: &Self::Ciphertext,
        b: &Self::Ciphertext,
    ) -> Result<Self::Ciphertext, BackendError>;

    /// `a · b` slot-wise without relinearization (`mul.nr`): a degree-2 ciphertext (three
    /// polynomials) that `add`, `sub` and the plaintext and scalar operations accept and
    /// [`Backend::relinearize`] brings back to degree 1. The default multiplies with
    /// relinearization ([`Backend::mul`]): a backend without degree-2 ciphertexts computes the
    /// same values and saves no key switch.
    fn mul_no_relinearize(
        &self,
        a: &Self::Ciphertext,
        b: &Self::Ciphertext,
    ) -> Result<Self::Ciphertext, BackendError> {
        self.mul(a, b)
    }

    /// Relinearizes a degree-2 ciphertext (`relin`: one key switch with the relinearization
    /// key). The default returns `a` unchanged, the counterpart of the default
    /// [`Backend::mul_no_relinearize`].
    fn relinearize(&self, a: &Self::Ciphertext) -> Result<Self::Ciphertext, BackendError> {
        Ok(a.clone())
    }

    /// `a + p` with `p` encoded at `a`'s level and scale.
    fn add_plain(
        &self,
        a: &Self::Ciphertext,
        p: PlainSlots<'_>,
    ) -> Result<Self::Ciphertext, BackendError>;

    /// `a − p` with `p` encoded at `a`'s level and scale.
    fn sub_plain(
        &self,
        a: &Self::Ciphertext,
        p: PlainSlots<'_>,
    ) -> Result<Self::Ciphertext, BackendError>;

    /// `a · p` slot-wise, `p` encoded at `a`'s level with the default scale (not rescaled).
    fn mul_plain(
        &self,
        a: &Self::Ciphertext,
        p: PlainSlots<'_>,
    ) -> Result<Self::Ciphertext, BackendError>;

    /// `a + c` in every slot (empty slots included).
    fn add_scalar(&self, a: &Self::Ciphertext, c: f64) -> Result<Self::Ciphertext, BackendError>;

    /// `c · a` (the constant encoded at the default scale; not rescaled).
    fn mul_scalar(&self, a: &Self::Ciphertext, c: f64) -> Result<Self::Ciphertext, BackendError>;

    /// `−a`.
    fn negate(&self, a: &Self::Ciphertext) -> Result<Self::Ciphertext, BackendError>;

    /// Left rotation by `step` slots (one key switch).
    fn rotate(&self, a: &Self::Ciphertext, step: i32) -> Result<Self::Ciphertext, BackendError>;

    /// One left rotation of `a` per step, sharing one decomposition of `a` (hoisting; Halevi–Shoup,
    /// CRYPTO 2018, §5). The default rotates one step at a time.
    fn rotate_hoisted(
        &self,
        a: &Self::Ciphertext,
        steps: &[i32],
    ) -> Result<Vec<Self::Ciphertext>, BackendError> {
        steps.iter().map(|&s| self.rotate(a, s)).collect()
    }

    /// Divides by the last prime: one level down, scale / q_level.
    fn rescale(&self, a: &Self::Ciphertext) -> Result<Self::Ciphertext, BackendError>;

    /// Drops to `level` without changing the scale.
    fn level_down(
        &self,
        a: &Self::Ciphertext,
        level: u32,
    ) -> Result<Self::Ciphertext, BackendError>;

    /// Refreshes `a` (|slots| ≤ 1, `slots` of them used) to `level`, multiplied by `scale`
    /// (folded into SlotsToCoeffs: no level).
    fn bootstrap(
        &self,
        a: &Self::Ciphertext,
        slots: u32,
        level: u32,
        scale: f64,
    ) -> Result<Self::Ciphertext, BackendError>;

    /// Level, depth and scale of `a`, as far as the backend tracks them.
    fn info(&self, a: &Self::Ciphertext) -> CiphertextInfo;

    /// The slot values of `a` where the backend can read them (`sim`; a CKKS backend holding the
    /// secret key in tests), for the plan's range checks; `None` otherwise (checks are skipped).
    fn peek(&self, _a: &Self::Ciphertext) -> Option<Vec<f64>> {
        None
    }
}

/// A backend that can also encrypt and decrypt slot vectors (client side): `sim` always, a CKKS
/// backend when it holds the secret key. Lets one test body run on every backend.
pub trait Client: Backend {
    /// A fresh ciphertext of `values` (`slots()` reals).
    ///
    /// # Errors
    /// [`BackendError::Mismatch`] when `values` does not hold `slots()` reals.
    fn encrypt(&self, values: &[f64]) -> Result<Self::Ciphertext, BackendError>;

    /// A fresh ciphertext of `values` at `level` (a leveled plan's declared input level,
    /// [`cachemir_ir::plan::Ciphertexts::level`]); `None` is [`Client::encrypt`]. The default
    /// encrypts at the top level and drops to `level`.
    ///
    /// # Errors
    /// As [`Client::encrypt`] and [`Backend::level_down`].
    fn encrypt_at(
        &self,
        values: &[f64],
        level: Option<u32>,
    ) -> Result<Self::Ciphertext, BackendError> {
        let fresh = self.encrypt(values)?;
        match level {
            Some(level) => self.level_down(&fresh, level),
            None => Ok(fresh),
        }
    }

    /// The `slots()` reals `a` holds.
    fn decrypt(&self, a: &Self::Ciphertext) -> Result<Vec<f64>, BackendError>;
}
