//! The web console (`/console/`) with the real binary: its files and their headers over HTTP,
//! then every page in Debian's Chromium, driven by playwright-core (`api/console/browser_test.mjs`):
//! sign-in with a wrong and a right key, a fresh alert arriving without a reload, a review from
//! the keyboard checked in the API, a stale review's 412, the transactions search, and a second
//! shop that sees none of the first's data; no request leaves the API's origin.
//!
//! `scripts/test.sh` installs what the browser test needs (Chromium, `npm ci` in api/console).
//! `CONSOLE_SCREENSHOTS=<folder>` (from the repository's root) keeps a screenshot of each page:
//! the README's come from `CONSOLE_SCREENSHOTS=docs/console`.

mod support;

use std::path::Path;

use api::console::CONTENT_SECURITY_POLICY;
use reqwest::StatusCode;
use support::{DEV_KEY, OTHER_KEY, Server};

#[tokio::test]
async fn the_console_is_served_with_its_policy_and_without_the_api_key() {
    let temp = tempfile::tempdir().expect("temp");
    let server = Server::start(
        &temp.path().join("data"),
        &[support::two_shops(temp.path())],
    )
    .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let bare = no_redirects
        .get(format!("{}/console", server.base))
        .send()
        .await
        .expect("send");
    assert_eq!(bare.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(
        bare.headers()["location"],
        "console/",
        "relative, for a stage prefix"
    );
    for (file, content_type) in [
        ("", "text/html"),
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
        ("vendor/uplot/uPlot.iife.min.js", "text/javascript"),
        ("vendor/uplot/uPlot.min.css", "text/css"),
    ] {
        let answer = server
            .http
            .get(format!("{}/console/{file}", server.base))
            .send()
            .await
            .expect("send");
        assert_eq!(answer.status(), StatusCode::OK, "{file}");
        let headers = answer.headers();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type)
        );
        assert_eq!(headers["content-security-policy"], CONTENT_SECURITY_POLICY);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        let body = answer.text().await.expect("body");
        if file.starts_with("vendor/") {
            continue;
        }
        // Nothing inline and nothing from elsewhere: the policy would refuse it anyway.
        assert!(
            !body.contains("<script>") && !body.contains(" style="),
            "{file}"
        );
        assert!(
            !body.contains("http://") && !body.contains("https://"),
            "{file}"
        );
    }
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
}

/// The vendored chart library is the one npm gives for the version `package.json` pins (and
/// `package-lock.json` checksums).
#[test]
fn the_vendored_chart_library_is_the_published_one() {
    let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    let published = console.join("node_modules/uplot");
    assert!(
        published.is_dir(),
        "`npm ci` in api/console installs uplot: scripts/test.sh does it"
    );
    for (vendored, original) in [
        ("uPlot.iife.min.js", "dist/uPlot.iife.min.js"),
        ("uPlot.min.css", "dist/uPlot.min.css"),
        ("LICENSE", "LICENSE"),
    ] {
        let read = |path: std::path::PathBuf| std::fs::read(&path).expect("read");
        assert!(
            read(console.join("vendor/uplot").join(vendored)) == read(published.join(original)),
            "vendor/uplot/{vendored} differs from uplot's {original}"
        );
    }
}

#[tokio::test]
async fn the_console_works_in_a_real_browser_for_one_shop_and_never_shows_another_s() {
    let console = Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    assert!(
        console.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "the browser test needs Debian's chromium and `npm ci` in api/console: scripts/test.sh installs both"
    );
    let temp = tempfile::tempdir().expect("temp");
    // The first shop is the operator's too: its overview has the queue's figures.
    let env = [
        support::two_shops(temp.path()),
        ("OPERATOR_SHOPS", "demo".to_owned()),
    ];
    let server = Server::start(&temp.path().join("data"), &env).await;
    let mut command = tokio::process::Command::new("node");
    command
        .arg(console.join("browser_test.mjs"))
        .current_dir(&console)
        .env("BASE", &server.base)
        .env("SHOP_KEY", DEV_KEY)
        .env("OTHER_KEY", OTHER_KEY)
        .kill_on_drop(true);
    if let Ok(folder) = std::env::var("CONSOLE_SCREENSHOTS") {
        // Relative to the repository's root, where the README's command is typed.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        command.env("SCREENSHOTS", root.join(folder));
    }
    let run = tokio::time::timeout(std::time::Duration::from_secs(180), command.output())
        .await
        .expect("the browser test ends within 3 minutes")
        .expect("run node");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr),
    );
    assert!(
        run.status.success(),
        "browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("every step passed"), "{stdout}");
}
