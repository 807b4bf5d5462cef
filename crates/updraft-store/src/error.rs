/// A failure of a state backend.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The caller passed something the store refuses (a key too long, a value too big...).
    #[error("{0}")]
    Invalid(String),
    /// The backend failed (I/O, corruption, a lost connection).
    #[error("state backend failed: {0}")]
    Backend(String),
}
