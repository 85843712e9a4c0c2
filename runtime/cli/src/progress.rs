//! Progress on the terminal (indicatif, drawn on stderr, hidden when stderr is not a terminal):
//! a key-generation bar in bytes, and [`Observed`], a backend wrapper that advances a bar per
//! instruction with the current layer, bootstraps done and the estimated time left (restarted
//! for each step of a generation).

use std::sync::atomic::{AtomicUsize, Ordering};

use cachemir_ir::plan::{Instruction, Plan};
use cachemir_vm::{Backend, BackendError, CiphertextInfo, Client, PlainSlots};
use indicatif::{ProgressBar, ProgressStyle};

/// A bar of `total` bytes for key generation.
pub fn bytes_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({eta} left) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// `inner`, advancing a bar once per instruction the backend executes (every instruction but
/// `load`, `store` and `free`, which the VM handles itself; a `rot.h` group counts once).
pub struct Observed<'a, B> {
    inner: &'a B,
    bar: ProgressBar,
    /// The layer of each backend instruction, in order.
    layers: Vec<Option<u32>>,
    boots_total: usize,
    boots: AtomicUsize,
    done: AtomicUsize,
}

impl<B> std::fmt::Debug for Observed<'_, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observed")
            .field("done", &self.done)
            .field("total", &self.layers.len())
            .finish()
    }
}

impl<'a, B: Backend> Observed<'a, B> {
    /// Observes `inner` running `plan`.
    pub fn new(inner: &'a B, plan: &Plan) -> Self {
        let mut layers = Vec::new();
        let mut boots_total = 0;
        for (k, instruction) in plan.instructions.iter().enumerate() {
            match instruction {
                Instruction::Load { .. } | Instruction::Store { .. } | Instruction::Free { .. } => {
                }
                other => {
                    boots_total += usize::from(matches!(other, Instruction::Bootstrap { .. }));
                    let site = plan.instruction_sites.get(k).copied().unwrap_or(u32::MAX);
                    layers.push(plan.sites.get(site as usize).and_then(|s| s.layer));
                }
            }
        }
        let bar = ProgressBar::new(layers.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} instructions, {msg} ({eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            inner,
            bar,
            layers,
            boots_total,
            boots: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    /// Starts the bar again for another run of the plan (the next step of a generation).
    pub fn restart(&self) {
        self.done.store(0, Ordering::Relaxed);
        self.boots.store(0, Ordering::Relaxed);
        self.bar.reset();
    }

    fn tick<T>(&self, result: Result<T, BackendError>) -> Result<T, BackendError> {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let layer = self
            .layers
            .get(done.min(self.layers.len()).saturating_sub(1))
            .copied()
            .flatten()
            .map_or(String::new(), |l| format!("layer {l}, "));
        self.bar.set_message(format!(
            "{layer}{}/{} bootstraps",
            self.boots.load(Ordering::Relaxed),
            self.boots_total
        ));
        self.bar.set_position(done as u64);
        result
    }
}

impl<B: Backend> Backend for Observed<'_, B> {
    type Ciphertext = B::Ciphertext;

    fn name(&self) -> &'static str {
        self.inner.name()
    }
    fn slots(&self) -> usize {
        self.inner.slots()
    }
    fn add(&self, a: &B::Ciphertext, b: &B::Ciphertext) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.add(a, b))
    }
    fn sub(&self, a: &B::Ciphertext, b: &B::Ciphertext) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.sub(a, b))
    }
    fn mul(&self, a: &B::Ciphertext, b: &B::Ciphertext) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.mul(a, b))
    }
    fn add_plain(
        &self,
        a: &B::Ciphertext,
        p: PlainSlots<'_>,
    ) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.add_plain(a, p))
    }
    fn sub_plain(
        &self,
        a: &B::Ciphertext,
        p: PlainSlots<'_>,
    ) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.sub_plain(a, p))
    }
    fn mul_plain(
        &self,
        a: &B::Ciphertext,
        p: PlainSlots<'_>,
    ) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.mul_plain(a, p))
    }
    fn add_scalar(&self, a: &B::Ciphertext, c: f64) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.add_scalar(a, c))
    }
    fn mul_scalar(&self, a: &B::Ciphertext, c: f64) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.mul_scalar(a, c))
    }
    fn negate(&self, a: &B::Ciphertext) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.negate(a))
    }
    fn rotate(&self, a: &B::Ciphertext, step: i32) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.rotate(a, step))
    }
    fn rotate_hoisted(
        &self,
        a: &B::Ciphertext,
        steps: &[i32],
    ) -> Result<Vec<B::Ciphertext>, BackendError> {
        self.tick(self.inner.rotate_hoisted(a, steps))
    }
    fn rescale(&self, a: &B::Ciphertext) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.rescale(a))
    }
    fn level_down(&self, a: &B::Ciphertext, level: u32) -> Result<B::Ciphertext, BackendError> {
        self.tick(self.inner.level_down(a, level))
    }
    fn bootstrap(
        &self,
        a: &B::Ciphertext,
        slots: u32,
        level: u32,
        scale: f64,
    ) -> Result<B::Ciphertext, BackendError> {
        let result = self.inner.bootstrap(a, slots, level, scale);
        self.boots.fetch_add(1, Ordering::Relaxed);
        self.tick(result)
    }
    fn info(&self, a: &B::Ciphertext) -> CiphertextInfo {
        self.inner.info(a)
    }
    fn peek(&self, a: &B::Ciphertext) -> Option<Vec<f64>> {
        self.inner.peek(a)
    }
}

/// Encryption and decryption go straight to `inner` (they are the client's, not the plan's).
impl<B: Client> Client for Observed<'_, B> {
    fn encrypt(&self, values: &[f64]) -> Result<B::Ciphertext, BackendError> {
        self.inner.encrypt(values)
    }
    fn encrypt_at(
        &self,
        values: &[f64],
        level: Option<u32>,
    ) -> Result<B::Ciphertext, BackendError> {
        self.inner.encrypt_at(values, level)
    }
    fn decrypt(&self, a: &B::Ciphertext) -> Result<Vec<f64>, BackendError> {
        self.inner.decrypt(a)
    }
}
