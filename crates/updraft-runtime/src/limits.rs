//! Per-instance resource caps, checked by wasmtime as the guest grows memory and tables.

use wasmtime::ResourceLimiter;

/// Table elements one instance may have; generous for any real toolchain.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Caps one instance's linear memory and remembers whether the cap was hit, so a trap that
/// follows (a Rust guest aborts when allocation fails) is reported as a memory limit.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory_cap: usize,
    pub(crate) hit_memory_cap: bool,
}

impl Limiter {
    pub(crate) fn new(memory_cap: u64) -> Self {
        Self {
            memory_cap: usize::try_from(memory_cap).unwrap_or(usize::MAX),
            hit_memory_cap: false,
        }
    }

    /// Bytes of linear memory one instance may have.
    pub(crate) fn memory_cap(&self) -> usize {
        self.memory_cap
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.hit_memory_cap = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
