use std::path::PathBuf;

use updraft_build::templates;

#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The template: `http-rust` (an HTTP function) or `event-rust` (an event function run
    /// by a topic, a queue and a cron schedule).
    pub template: String,
    /// The project (and function) name.
    pub name: String,
    /// Where to create it.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let dir = templates::create(&args.template, &args.name, &args.dir)?;
    println!(
        "created `{}` from template `{}`",
        dir.display(),
        args.template
    );
    println!("next: updraft up {}", dir.display());
    Ok(())
}
