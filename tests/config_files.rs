//! Configuration files: a corpus of good ones loads, every bad one fails naming its field,
//! config/example.yaml loads, and `check-config` exits accordingly.

mod common;

use std::path::{Path, PathBuf};

use aws_workflow_exporter::config::Config;

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no files in {}", dir.display());
    out
}

#[test]
fn good_configs_load() {
    for path in files("tests/config/good") {
        if let Err(e) = Config::load(&path) {
            panic!("{} should load: {e}", path.display());
        }
    }
}

#[test]
fn bad_configs_fail_naming_the_file_and_field() {
    for path in files("tests/config/bad") {
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} lacks a `# expect:` first line", path.display()));
        let err = match Config::load(&path) {
            Ok(_) => panic!("{} should fail", path.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(expect),
            "{}: error\n  {err}\ndoes not contain\n  {expect}",
            path.display()
        );
        assert!(
            err.contains(&path.display().to_string()),
            "{}: error does not name the file: {err}",
            path.display()
        );
    }
}

#[test]
fn the_example_config_loads_and_documents_every_option() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.yaml");
    let config = Config::load(&path).expect("config/example.yaml loads");
    assert_eq!(config.enabled_sources().len(), 3);
    let text = std::fs::read_to_string(&path).unwrap();
    // Every option of the full corpus file appears in the example, commented.
    let full = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/good/full.yaml"),
    )
    .unwrap();
    for key in full
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("- ").split_once(':'))
        .map(|(k, _)| k.trim())
    {
        assert!(
            text.contains(&format!("{key}:")),
            "config/example.yaml does not document `{key}`"
        );
    }
}

/// Runs the binary from the repository root.
fn run_binary(args: &[&str]) -> std::process::Output {
    common::Binary::new().in_repo().args(args).run()
}

#[test]
fn check_config_exits_zero_for_good_and_one_for_bad_files() {
    let good = run_binary(&["check-config", "config/example.yaml"]);
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(String::from_utf8_lossy(&good.stdout).contains("valid"));
    let bad = run_binary(&["check-config", "tests/config/bad/bad-regex.yaml"]);
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("tests/config/bad/bad-regex.yaml")
            && stderr.contains("state_machines.name_regex"),
        "{stderr}"
    );
    // Running the daemon with a bad file also exits non-zero before serving.
    let run = run_binary(&[
        "--config.file",
        "tests/config/bad/unknown-top-key.yaml",
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("unknown field `poll_intervall`"));
}

#[test]
fn logs_written_to_a_pipe_carry_no_colour_codes() {
    // The daemon starts (and logs), then fails on the missing web config file.
    let run = run_binary(&[
        "--web.listen-address",
        "127.0.0.1:0",
        "--web.config.file",
        "tests/config/does-not-exist.yml",
    ]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("INFO") && stderr.contains("starting"),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{1b}'), "escape codes in {stderr:?}");
}

#[test]
fn a_shard_outside_the_total_is_refused_before_serving() {
    let run = run_binary(&[
        "--shard",
        "3",
        "--total-shards",
        "3",
        "--web.listen-address",
        "127.0.0.1:0",
    ]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("--shard 3 is out of range") && stderr.contains("between 0 and 2"),
        "{stderr}"
    );
}
