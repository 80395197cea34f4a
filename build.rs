//! Sets GIT_REVISION for `aws_workflow_exporter_build_info{revision}`: the checkout's HEAD when
//! built from git; otherwise the GIT_REVISION environment variable (the Dockerfile passes its
//! REVISION build argument, since the build context leaves .git out); otherwise "unknown".

use std::path::PathBuf;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_REVISION");
    let revision = git(&["rev-parse", "HEAD"]);
    if revision.is_some() {
        // Rebuild when HEAD moves: HEAD itself (branch switches, detached commits), the branch's
        // ref and packed-refs (commits). In a worktree HEAD lives in its own git dir.
        for (dir_arg, file) in [
            ("--git-dir", "HEAD".to_owned()),
            ("--git-common-dir", "packed-refs".to_owned()),
            (
                "--git-common-dir",
                git(&["symbolic-ref", "-q", "HEAD"]).unwrap_or_default(),
            ),
        ] {
            if let Some(dir) = git(&["rev-parse", dir_arg]) {
                let path = PathBuf::from(dir).join(file);
                if path.is_file() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
    }
    let revision = revision
        .or_else(|| {
            std::env::var("GIT_REVISION")
                .ok()
                .filter(|r| !r.trim().is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=GIT_REVISION={revision}");
}
