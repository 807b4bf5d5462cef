//! Buckets from outside a function: `updraft blob put|get|ls|rm` through the admin API,
//! on the default folder backend and on S3-compatible storage (a private `moto_server`).

use std::time::Duration;

use sha2::{Digest, Sha256};
use updraft_test_support::s3::S3Server;
use updraft_test_support::{AppDir, Server};

use crate::{bin, cli, kitchen_app};

/// Puts `[bucket.uploads]` of `app` on a fresh bucket of `s3` (with `extra` keys) and
/// starts the app with an access key.
pub fn start_on_s3(app: &AppDir, s3: &S3Server, extra: &str) -> Server {
    app.write(
        "runtime.toml",
        format!(
            "[bucket.uploads]\ntype = \"s3\"\nendpoint = \"{}\"\nbucket = \"{}\"\n{extra}\n",
            s3.url(),
            s3.new_bucket()
        ),
    );
    Server::start_with_env(
        bin(),
        app.path(),
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    )
}

fn bucket_app(extra: &str) -> AppDir {
    kitchen_app(&format!("\n[bucket.uploads]\n{extra}"))
}

fn ok(out: (i32, String, String)) -> String {
    assert_eq!(out.0, 0, "stdout: {}\nstderr: {}", out.1, out.2);
    out.1
}

fn fails(out: (i32, String, String), needle: &str) -> String {
    assert_ne!(out.0, 0, "expected a failure: {}", out.1);
    assert!(out.2.contains(needle), "wanted `{needle}` in: {}", out.2);
    out.2
}

/// The put → ls → get → rm round trip a user does, with conditional puts.
fn round_trip(server: &Server, app: &AppDir) {
    let file = app.write("orders.csv", "id,total\n1,9.50\n");
    let put = ok(cli(
        server,
        &[
            "blob",
            "put",
            "uploads",
            "incoming/orders.csv",
            file.to_str().unwrap(),
            "--output",
            "json",
        ],
    ));
    let info: serde_json::Value = serde_json::from_str(&put).expect(&put);
    assert_eq!(info["size"], 16, "{put}");
    let etag = info["etag"].as_str().expect("etag").to_owned();

    let ls = ok(cli(server, &["blob", "ls", "uploads", "incoming/"]));
    assert!(
        ls.contains("incoming/orders.csv") && ls.contains("16"),
        "{ls}"
    );
    let empty = ok(cli(server, &["blob", "ls", "uploads", "nothing/"]));
    assert!(!empty.contains("orders"), "{empty}");

    let out = app.path().join("back.csv");
    ok(cli(
        server,
        &[
            "blob",
            "get",
            "uploads",
            "incoming/orders.csv",
            "-o",
            out.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "id,total\n1,9.50\n");

    // Create-only refuses an existing name; a stale etag refuses a replace.
    fails(
        cli(
            server,
            &[
                "blob",
                "put",
                "uploads",
                "incoming/orders.csv",
                file.to_str().unwrap(),
                "--if-none-match",
            ],
        ),
        "HTTP 412",
    );
    let newer = app.write("orders2.csv", "id,total\n1,9.50\n2,1.00\n");
    let put = ok(cli(
        server,
        &[
            "blob",
            "put",
            "uploads",
            "incoming/orders.csv",
            newer.to_str().unwrap(),
            "--if-match",
            &etag,
            "--output",
            "json",
        ],
    ));
    let replaced: serde_json::Value = serde_json::from_str(&put).expect(&put);
    assert_ne!(replaced["etag"].as_str(), Some(etag.as_str()), "{put}");
    fails(
        cli(
            server,
            &[
                "blob",
                "put",
                "uploads",
                "incoming/orders.csv",
                file.to_str().unwrap(),
                "--if-match",
                &etag,
            ],
        ),
        "condition failed",
    );

    ok(cli(
        server,
        &["blob", "rm", "uploads", "incoming/orders.csv"],
    ));
    fails(
        cli(server, &["blob", "get", "uploads", "incoming/orders.csv"]),
        "has no object `incoming/orders.csv`",
    );
    fails(
        cli(server, &["blob", "rm", "uploads", "incoming/orders.csv"]),
        "HTTP 404",
    );
}

#[tokio::test]
async fn blob_commands_round_trip_on_the_folder_backend() {
    let app = bucket_app("");
    let server = crate::start(&app);
    round_trip(&server, &app);

    // The bucket is a plain folder: what the CLI wrote is a file there, and a file another
    // program drops in is an object.
    let folder = app.path().join(".updraft/buckets/uploads");
    let file = app.write("a.txt", "hello");
    ok(cli(
        &server,
        &[
            "blob",
            "put",
            "uploads",
            "notes/a.txt",
            file.to_str().unwrap(),
        ],
    ));
    assert_eq!(
        std::fs::read_to_string(folder.join("notes/a.txt")).unwrap(),
        "hello"
    );
    std::fs::create_dir_all(folder.join("dropped")).unwrap();
    std::fs::write(folder.join("dropped/b.csv"), "x,y\n").unwrap();
    let ls = ok(cli(&server, &["blob", "ls", "uploads"]));
    assert!(
        ls.contains("dropped/b.csv") && ls.contains("notes/a.txt"),
        "{ls}"
    );
    let (code, body, err) = cli(&server, &["blob", "get", "uploads", "dropped/b.csv"]);
    assert_eq!((code, body.as_str()), (0, "x,y\n"), "{err}");
}

#[tokio::test]
async fn a_large_object_streams_both_ways() {
    let app = bucket_app("");
    let server = crate::start(&app);
    // 48 MiB of varied bytes, hashed as written.
    let path = app.path().join("big.bin");
    let mut hasher = Sha256::new();
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for i in 0..48u32 {
            for (j, b) in block.iter_mut().enumerate() {
                *b = (j as u32).wrapping_mul(31).wrapping_add(i) as u8;
            }
            hasher.update(&block);
            f.write_all(&block).unwrap();
        }
    }
    let want = hasher.finalize();
    ok(cli(
        &server,
        &["blob", "put", "uploads", "big.bin", path.to_str().unwrap()],
    ));
    let back = app.path().join("back.bin");
    ok(cli(
        &server,
        &[
            "blob",
            "get",
            "uploads",
            "big.bin",
            "-o",
            back.to_str().unwrap(),
        ],
    ));
    let got = Sha256::digest(std::fs::read(&back).unwrap());
    assert_eq!(got, want, "the object came back different");
    // No put leaves a temporary file behind.
    let tmp = app.path().join(".updraft/buckets/uploads/.updraft-tmp");
    let leftovers = std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "temporary files left in {}", tmp.display());
}

#[tokio::test]
async fn bad_names_and_unknown_buckets_are_refused_with_the_fix() {
    let app = bucket_app("");
    let server = crate::start(&app);
    let file = app.write("x.txt", "x");
    let f = file.to_str().unwrap();
    for (name, needle) in [
        ("../escape.txt", "refused"),
        ("a/../../escape.txt", "refused"),
        (".updraft-tmp/x", "refused"),
    ] {
        fails(cli(&server, &["blob", "put", "uploads", name, f]), needle);
    }
    assert!(!app.path().join(".updraft/buckets/escape.txt").exists());
    assert!(!app.path().join("escape.txt").exists());
    let err = fails(
        cli(&server, &["blob", "ls", "nope"]),
        "bucket `nope` is not declared",
    );
    assert!(err.contains("[bucket.nope]"), "{err}");
    // Nothing was lost on the way: the bucket still takes good names.
    ok(cli(&server, &["blob", "put", "uploads", "fine.txt", f]));
}

#[test]
fn an_unknown_bucket_backend_names_the_choices() {
    let app = bucket_app("");
    app.write("runtime.toml", "[bucket.uploads]\ntype = \"gcs\"\n");
    let out = updraft_test_support::run(
        bin(),
        &[
            "up",
            app.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("unknown `[bucket.uploads] type = \"gcs\"`")
            && err.contains("\"fs\" or \"s3\""),
        "{err}"
    );
}

#[tokio::test]
async fn blob_commands_round_trip_on_s3() {
    let s3 = S3Server::start();
    let app = bucket_app("");
    let server = start_on_s3(&app, &s3, "prefix = \"app\"");
    round_trip(&server, &app);
    // Nothing went to a local folder.
    assert!(
        !app.path()
            .join(".updraft/buckets/uploads/incoming")
            .exists()
    );
}
