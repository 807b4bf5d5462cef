//! The dashboard in a real browser: `tests/browser/dashboard.mjs` drives headless Chromium
//! (playwright-core, with axe-core for accessibility) through the pages an operator uses,
//! against two running apps: the kitchen and worker guests with a queue that dead-letters,
//! and `examples/data-pipeline` with its sample loaded. Screenshots are kept under
//! `target/browser/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use updraft_test_support::{Server, run_with_env};

use crate::{bin, copy_example};

fn browser_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser")
}

#[tokio::test]
async fn an_operator_tours_the_dashboard_in_chromium() {
    let scripts = browser_tests();
    assert!(
        scripts.join("node_modules/playwright-core").is_dir()
            && scripts.join("node_modules/axe-core").is_dir(),
        "the browser tests need their npm packages: `npm ci --prefix tests/browser` (scripts/test runs it)"
    );
    // The queue backs off 3 s between attempts, so a redriven message stays out of the
    // dead letters long enough for the page to show it gone.
    let jobs_app = crate::kitchen_and_worker(&crate::dashboard::jobs_manifest("3s", "3s"));
    let jobs = crate::start(&jobs_app);
    let pipeline_dir = copy_example("data-pipeline");
    let pipeline = Server::start(bin(), pipeline_dir.path(), &[]);
    crate::dashboard::drop_sample_and_wait(&pipeline, pipeline_dir.path()).await;

    let artifacts = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../browser");
    let script = scripts.join("dashboard.mjs");
    let (jobs_url, pipeline_url) = (jobs.base.clone(), pipeline.base.clone());
    let out = tokio::task::spawn_blocking(move || {
        run_with_env(
            "node",
            &[script.to_str().unwrap()],
            &[
                ("JOBS_URL", jobs_url.as_str()),
                ("PIPELINE_URL", pipeline_url.as_str()),
                ("ARTIFACTS", artifacts.to_str().unwrap()),
            ],
            Duration::from_secs(240),
        )
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("browser tour passed"),
        "the browser tour failed ({:?}):\n{stdout}\n{stderr}\n-- jobs app:\n{}\n-- pipeline app:\n{}",
        out.status,
        jobs.stderr.text(),
        pipeline.stderr.text()
    );
}
