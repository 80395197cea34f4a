//! Shared harness of the integration tests and the scale benchmark, one file per idea:
//! - `daemon`: the exporter binary as a child process (the one place it is started);
//! - `served`: an exporter in the test's own process polling the simulator, served on loopback;
//! - `http`: a minimal HTTP/1.1 client, so tests see exactly what a scraper sees;
//! - `scrape`: a parser for what /metrics returns, and promtool's verdict on it;
//! - `moto`: moto_server, a third-party AWS emulator;
//! - `fixtures`: builders of the simulator's worlds, faults and map runs.
#![allow(dead_code, unused_imports)]

mod daemon;
mod fixtures;
mod http;
mod moto;
mod scrape;
mod served;

pub use daemon::*;
pub use fixtures::*;
pub use http::*;
pub use moto::*;
pub use scrape::*;
pub use served::*;

use std::process::Command;

/// How long [`wait_until`] waits.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Re-checks `cond` every 50 ms until it holds; panics after [`DEADLINE`]. For conditions with no
/// event to await (moto runs executions on its own threads, Prometheus scrapes on its own clock).
pub async fn wait_until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    wait_for(what, async || cond().await.then_some(())).await
}

/// Like [`wait_until`], for a condition that yields the value it found.
pub async fn wait_for<T>(what: &str, mut cond: impl AsyncFnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        ticks.tick().await;
        if let Some(v) = cond().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
    }
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free a moment ago, for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Validates `doc` against the JSON schema at `schema` (relative to the repository) with
/// Python's `jsonschema`, checking the schema itself first; `Err` has why not.
pub fn validate_json_schema(schema: &str, doc: &serde_json::Value) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("doc.json");
    std::fs::write(&file, doc.to_string()).expect("write the document");
    let schema = format!("{}/{schema}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.Draft202012Validator.check_schema(schema)\n\
             jsonschema.Draft202012Validator(schema).validate(json.load(open(sys.argv[2])))",
        ])
        .arg(schema)
        .arg(&file)
        .output()
        .expect("python3 runs (PATH needs the test venv: scripts/setup-tools.sh)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
