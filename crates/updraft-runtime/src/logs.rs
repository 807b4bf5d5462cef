//! Guest stdout and stderr, captured per invocation and handed to the observer line by line,
//! tagged with the function and invocation id.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

use crate::Observer;

/// Longest line kept; longer lines are split.
const MAX_LINE: usize = 16 * 1024;
/// Bytes one invocation may log; the rest is dropped with one note.
const MAX_BYTES_PER_INVOCATION: usize = 1 << 20;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    /// stdout
    Stdout,
    /// stderr
    Stderr,
}

impl LogStream {
    /// `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

/// Both streams of one invocation share the byte budget.
#[derive(Clone)]
pub(crate) struct InvocationLog {
    inner: Arc<Mutex<LogState>>,
}

struct LogState {
    function: Arc<str>,
    invocation: Arc<str>,
    observer: Observer,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    written: usize,
    truncated: bool,
}

impl InvocationLog {
    pub(crate) fn new(function: Arc<str>, invocation: Arc<str>, observer: Observer) -> Self {
        Self {
            inner: Arc::new(Mutex::new(LogState {
                function,
                invocation,
                observer,
                stdout: Vec::new(),
                stderr: Vec::new(),
                written: 0,
                truncated: false,
            })),
        }
    }

    pub(crate) fn stream(&self, stream: LogStream) -> GuestOutput {
        GuestOutput {
            log: self.clone(),
            stream,
        }
    }

    /// Flushes this invocation's output and starts the next one's, for an instance that
    /// serves another invocation: its lines carry the new id and it gets a fresh budget.
    pub(crate) fn rebind(&self, invocation: Arc<str>) {
        self.flush();
        if let Ok(mut state) = self.inner.lock() {
            state.invocation = invocation;
            state.written = 0;
            state.truncated = false;
        }
    }

    /// Emits what is left without a trailing newline.
    pub(crate) fn flush(&self) {
        if let Ok(mut state) = self.inner.lock() {
            for stream in [LogStream::Stdout, LogStream::Stderr] {
                let rest = std::mem::take(state.buffer(stream));
                if !rest.is_empty() {
                    state.emit(stream, &rest);
                }
            }
        }
    }

    fn write(&self, stream: LogStream, bytes: &[u8]) {
        let Ok(mut state) = self.inner.lock() else {
            return;
        };
        let room = MAX_BYTES_PER_INVOCATION.saturating_sub(state.written);
        let take = bytes.len().min(room);
        state.written += take;
        let mut data = &bytes[..take];
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    let mut line = std::mem::take(state.buffer(stream));
                    line.extend_from_slice(&data[..nl]);
                    state.emit(stream, &line);
                    data = &data[nl + 1..];
                }
                None => {
                    state.buffer(stream).extend_from_slice(data);
                    if state.buffer(stream).len() >= MAX_LINE {
                        let line = std::mem::take(state.buffer(stream));
                        state.emit(stream, &line);
                    }
                    data = &[];
                }
            }
        }
        if take < bytes.len() && !state.truncated {
            state.truncated = true;
            let note = format!(
                "[updraft: log output over {} KiB dropped for this invocation]",
                MAX_BYTES_PER_INVOCATION >> 10
            );
            state.emit(stream, note.as_bytes());
        }
    }
}

impl LogState {
    fn buffer(&mut self, stream: LogStream) -> &mut Vec<u8> {
        match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        }
    }

    fn emit(&self, stream: LogStream, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        self.observer
            .log_line(&self.function, &self.invocation, stream, line);
    }
}

/// One of an invocation's output streams, as WASI sees it.
pub(crate) struct GuestOutput {
    log: InvocationLog,
    stream: LogStream,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(GuestOutput {
            log: self.log.clone(),
            stream: self.stream,
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(AsyncGuestOutput(GuestOutput {
            log: self.log.clone(),
            stream: self.stream,
        }))
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.log.write(self.stream, &bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Writes never block: output past the budget is dropped, not refused, so a chatty
        // guest is never failed by its own logging.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

struct AsyncGuestOutput(GuestOutput);

impl tokio::io::AsyncWrite for AsyncGuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.log.write(self.0.stream, buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
