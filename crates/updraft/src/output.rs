//! Human output: the error chain, tracing to stderr, build progress.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Logs go to stderr; `RUST_LOG` (or `UPDRAFT_LOG`) overrides the default filter.
pub fn init_tracing() {
    let filter = std::env::var("UPDRAFT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Prints `error: …` and each cause on its own `Caused by:` line; returns exit code 1.
pub fn fail(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {err}");
    let mut causes = err.chain().skip(1).peekable();
    if causes.peek().is_some() {
        eprintln!("\nCaused by:");
        for (i, cause) in causes.enumerate() {
            eprintln!("  {i}: {cause}");
        }
    }
    ExitCode::FAILURE
}

/// A spinner on a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    pub fn start(message: String) -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(message);
            bar.enable_steady_tick(Duration::from_millis(100));
            Self { bar: Some(bar) }
        } else {
            eprintln!("{message}");
            Self { bar: None }
        }
    }

    pub fn finish(self, message: String) {
        match self.bar {
            Some(bar) => bar.finish_with_message(message),
            None => eprintln!("{message}"),
        }
    }

    pub fn abandon(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
