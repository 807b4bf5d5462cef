/// A failure of a state backend, by kind: what a caller can do about it differs (fix the
/// input, try again now, try again later, or report it).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The caller passed something the store refuses (a key too long, a value too big...).
    #[error("{0}")]
    Invalid(String),
    /// Concurrent changes won every attempt (a contended counter, a claim); doing it again
    /// may succeed.
    #[error("{0}")]
    Conflict(String),
    /// The backend cannot be reached or did not answer in time; try again later.
    #[error("state backend unavailable: {0}")]
    Unavailable(String),
    /// The backend failed (I/O, corruption, a refused operation).
    #[error("state backend failed: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether the same call may succeed if made again (later).
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Conflict(_) | StoreError::Unavailable(_))
    }
}
