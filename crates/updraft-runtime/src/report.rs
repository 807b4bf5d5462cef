//! What the engine runs with, said out loud: the allocator, the pooling limits, and how an
//! instance's memory is reset for the next one (the biggest lever on the HTTP path). `up`
//! prints it, `/_updraft/metrics` exports it and the benchmarks print it beside their
//! figures, so a slow machine can be told from a regression.

use std::fmt;

/// How instance memory is made clean for the next instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryReset {
    /// Only the pages an instance dirtied are reset (Linux `PAGEMAP_SCAN`).
    DirtyPages,
    /// The whole resident part of each memory is cleared with `memset`, because of `why`.
    Memset {
        /// Why the dirty-page scan is not used.
        why: &'static str,
    },
    /// No pooling allocator: every instance maps new memory (instantiation is slower).
    OnDemand,
}

/// Whether the host has swap, from `/proc/swaps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swap {
    Off,
    On,
    Unknown,
}

impl Swap {
    /// Reads `/proc/swaps`: its first line is a header; any other is an active swap area.
    pub(crate) fn of_host() -> Self {
        match std::fs::read_to_string("/proc/swaps") {
            Ok(swaps) if swaps.lines().skip(1).all(|l| l.trim().is_empty()) => Swap::Off,
            Ok(_) => Swap::On,
            Err(_) => Swap::Unknown,
        }
    }
}

/// Whether the pooling allocator may reset memory by scanning for dirty pages. The scan
/// looks for dirty pages that are *present*, so with swap a dirty page swapped out would be
/// neither reset nor decommitted, and the next instance in its slot could read it
/// (wasmtime PR 14357): with swap on, or unknown, updraft keeps the `memset`.
pub(crate) fn memory_reset(swap: Swap, scan_available: bool) -> MemoryReset {
    match (swap, scan_available) {
        (Swap::Off, true) => MemoryReset::DirtyPages,
        (Swap::On, _) => MemoryReset::Memset {
            why: "swap is on, and a dirty page swapped out would be neither reset nor decommitted",
        },
        (Swap::Unknown, _) => MemoryReset::Memset {
            why: "/proc/swaps cannot be read, so swap may be on",
        },
        (Swap::Off, false) => MemoryReset::Memset {
            why: "the kernel does not offer the PAGEMAP_SCAN ioctl on /proc/self/pagemap (Linux 6.7 or later)",
        },
    }
}

/// The engine's configuration as it took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineReport {
    /// How memory is reset between instances.
    pub memory_reset: MemoryReset,
    /// Instances that may exist at once.
    pub max_instances: u32,
    /// The largest linear memory, in bytes.
    pub max_memory: u64,
    /// Bytes of each memory and table kept resident between instances.
    pub keep_resident: usize,
}

impl EngineReport {
    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.memory_reset != MemoryReset::OnDemand
    }

    /// Whether only dirtied pages are reset.
    pub fn dirty_page_reset(&self) -> bool {
        self.memory_reset == MemoryReset::DirtyPages
    }
}

impl fmt::Display for EngineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mib = |bytes: u64| bytes / (1 << 20);
        let resident = mib(u64::try_from(self.keep_resident).unwrap_or(u64::MAX));
        match &self.memory_reset {
            MemoryReset::OnDemand => write!(
                f,
                "on-demand allocation (the pooling allocator is unavailable, so instantiation is slower), up to {} instances of at most {} MiB",
                self.max_instances,
                mib(self.max_memory)
            ),
            reset => {
                write!(
                    f,
                    "pooling allocator, up to {} instances of at most {} MiB, {resident} MiB kept resident; memory reset: ",
                    self.max_instances,
                    mib(self.max_memory)
                )?;
                match reset {
                    MemoryReset::Memset { why } => {
                        write!(
                            f,
                            "memset of the resident memory (no dirty-page scan: {why})"
                        )
                    }
                    _ => write!(f, "only the pages an instance dirtied (PAGEMAP_SCAN)"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(memory_reset: MemoryReset) -> String {
        EngineReport {
            memory_reset,
            max_instances: 1000,
            max_memory: 128 << 20,
            keep_resident: 16 << 20,
        }
        .to_string()
    }

    #[test]
    fn the_dirty_page_scan_is_used_only_without_swap_and_with_the_ioctl() {
        assert_eq!(memory_reset(Swap::Off, true), MemoryReset::DirtyPages);
        for (swap, scan, says) in [
            (Swap::On, true, "swap is on"),
            (Swap::Unknown, true, "/proc/swaps cannot be read"),
            (Swap::Off, false, "PAGEMAP_SCAN"),
        ] {
            match memory_reset(swap, scan) {
                MemoryReset::Memset { why } => assert!(why.contains(says), "{why}"),
                other => panic!("{swap:?}/{scan}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_report_says_what_is_in_force_and_why() {
        assert_eq!(
            report(MemoryReset::DirtyPages),
            "pooling allocator, up to 1000 instances of at most 128 MiB, 16 MiB kept resident; memory reset: only the pages an instance dirtied (PAGEMAP_SCAN)"
        );
        assert!(
            report(memory_reset(Swap::On, true))
                .ends_with("memory reset: memset of the resident memory (no dirty-page scan: swap is on, and a dirty page swapped out would be neither reset nor decommitted)")
        );
        assert!(report(MemoryReset::OnDemand).starts_with("on-demand allocation"));
    }
}
