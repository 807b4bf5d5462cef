use std::path::PathBuf;

/// Why a function's component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The `.wasm` file is missing or unreadable.
    #[error(
        "function `{function}`: cannot read component `{}`: {source}; build it (`updraft build`) or fix `source` in updraft.toml",
        path.display()
    )]
    Missing {
        /// The function.
        function: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not WebAssembly at all.
    #[error(
        "function `{function}`: `{}` is not a WebAssembly file; `source` must point at a `.wasm` component",
        path.display()
    )]
    NotWasm {
        /// The function.
        function: String,
        /// The file.
        path: PathBuf,
    },
    /// A core module instead of a component.
    #[error(
        "function `{function}`: `{}` is a core WebAssembly module, not a component; build it for the `wasm32-wasip2` target (`cargo build --release --target wasm32-wasip2`) or wrap it with `wasm-tools component new`",
        path.display()
    )]
    NotComponent {
        /// The function.
        function: String,
        /// The file.
        path: PathBuf,
    },
    /// The component is invalid, or needs imports updraft does not provide.
    #[error("function `{function}`: cannot load component `{}`: {message}", path.display())]
    Invalid {
        /// The function.
        function: String,
        /// The file.
        path: PathBuf,
        /// wasmtime's explanation, with context.
        message: String,
    },
    /// The engine or the compile cache failed.
    #[error("function `{function}`: {message}")]
    Engine {
        /// The function.
        function: String,
        /// What failed.
        message: String,
    },
}

/// Why an invocation did not produce the function's response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    /// Every instance slot of the function (or the node) is busy.
    #[error("function `{function}` is at its concurrency limit ({limit}); retry shortly")]
    AtCapacity {
        /// The function.
        function: String,
        /// The limit that was hit.
        limit: u32,
    },
    /// The request cannot be handed to a function (e.g. a `Host` header that is not text).
    #[error("bad request for function `{function}`: {message}")]
    BadRequest {
        /// The function.
        function: String,
        /// What is wrong.
        message: String,
    },
    /// The function did not answer within its timeout.
    #[error("function `{function}` did not answer within its timeout of {timeout:?}")]
    Timeout {
        /// The function.
        function: String,
        /// The limit.
        timeout: std::time::Duration,
    },
    /// The function needed more memory than its cap.
    #[error("function `{function}` exceeded its memory limit of {limit_mib} MiB")]
    MemoryLimit {
        /// The function.
        function: String,
        /// The cap.
        limit_mib: u64,
    },
    /// The function asked the host to hold more through `wasi:http` (header maps, request
    /// fields) than its memory limit allows.
    #[error(
        "function `{function}` exceeded its memory limit of {limit_mib} MiB in host memory held through wasi:http: {what} would take it past the limit. Header maps and request fields count against `memory`; hold fewer or smaller ones, or raise it"
    )]
    HostMemoryLimit {
        /// The function.
        function: String,
        /// The cap.
        limit_mib: u64,
        /// The call that would have passed it.
        what: String,
    },
    /// The guest trapped, returned an error, or never set a response.
    #[error("function `{function}` failed: {message}")]
    Failed {
        /// The function.
        function: String,
        /// The trap or error text.
        message: String,
    },
}

impl InvokeError {
    /// The outcome to record for it.
    pub fn outcome(&self) -> crate::Outcome {
        match self {
            InvokeError::AtCapacity { .. } => crate::Outcome::Rejected,
            InvokeError::Timeout { .. } => crate::Outcome::Timeout,
            InvokeError::MemoryLimit { .. } | InvokeError::HostMemoryLimit { .. } => {
                crate::Outcome::MemoryLimit
            }
            InvokeError::Failed { .. } | InvokeError::BadRequest { .. } => crate::Outcome::Error,
        }
    }
}
