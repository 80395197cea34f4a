//! build_info carries the revision the binary was built from: the checkout's HEAD (build.rs).

mod common;

use std::process::Command;

use common::Harness;

#[tokio::test]
async fn build_info_carries_the_checkouts_git_revision() {
    let head = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git runs");
    assert!(head.status.success(), "the tests run from a git checkout");
    let head = String::from_utf8(head.stdout).unwrap().trim().to_owned();
    assert_eq!(head.len(), 40, "a full commit id: {head}");

    let h = Harness::start(&[], |_| {}).await;
    let s = h.scrape().await;
    assert_eq!(
        s.value(
            "aws_workflow_exporter_build_info",
            &[
                ("revision", head.as_str()),
                ("version", env!("CARGO_PKG_VERSION"))
            ]
        ),
        Some(1.0),
        "{}",
        s.text
    );
}
