use std::path::PathBuf;

use anyhow::Context;
use updraft_build::builder::{self, BuildStep};
use updraft_server::load_app;

use crate::output::Progress;

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The app folder (or its updraft.toml).
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}

pub async fn run(args: BuildArgs) -> anyhow::Result<()> {
    // The whole manifest is checked, triggers too, before anything is built.
    let (manifest, _) = load_app(&args.dir)?;
    let steps = builder::build_steps(&manifest)?;
    if steps.is_empty() {
        println!(
            "no function in `{}` has a build command",
            manifest.path.display()
        );
        return Ok(());
    }
    build_all(steps).await
}

/// Runs `steps` one after another, with progress.
pub async fn build_all(steps: Vec<BuildStep>) -> anyhow::Result<()> {
    for step in steps {
        let progress = Progress::start(format!("building `{}`: {}", step.function, step.command));
        let function = step.function.clone();
        let result = tokio::task::spawn_blocking(move || builder::run(&step))
            .await
            .context("the build task panicked")?;
        match result {
            Ok(took) => {
                progress.finish(format!("built `{function}` in {:.1}s", took.as_secs_f64()))
            }
            Err(err) => {
                progress.abandon();
                return Err(err);
            }
        }
    }
    Ok(())
}
