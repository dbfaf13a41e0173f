//! Stamps the binary with what `otel-admission version` and the
//! `otel_admission_build_info` gauge report: the git commit it was built
//! from and the build date.
//!
//! - `OTEL_ADMISSION_GIT_COMMIT`: `OTEL_ADMISSION_BUILD_COMMIT` from the
//!   build's environment when set (a Docker build, whose context has no
//!   `.git`, can pass it as a build argument), else `git rev-parse --short
//!   HEAD`, else `unknown` (no git, no repository: a source tarball).
//! - `OTEL_ADMISSION_BUILD_DATE`: the UTC date (`YYYY-MM-DD`) of
//!   `SOURCE_DATE_EPOCH` when set (reproducible builds), else of now.
//!
//! Rebuilds stay cheap: the script reruns only when HEAD moves (`.git/HEAD`
//! for a branch switch or a detached checkout, the branch's ref file for a
//! commit), when `SOURCE_DATE_EPOCH` or `OTEL_ADMISSION_BUILD_COMMIT`
//! changes, or when it changes itself; never on an ordinary source edit.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-env-changed=OTEL_ADMISSION_BUILD_COMMIT");
    let commit = std::env::var("OTEL_ADMISSION_BUILD_COMMIT")
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    watch_head();
    println!("cargo:rustc-env=OTEL_ADMISSION_GIT_COMMIT={commit}");
    println!("cargo:rustc-env=OTEL_ADMISSION_BUILD_DATE={}", build_date());
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

/// `rerun-if-changed` for HEAD and the ref it points to. Only files that
/// exist are named: cargo reruns the script on every build for a missing one.
/// A ref that lives only in `packed-refs` is covered by that file.
fn watch_head() {
    let Some(git_dir) = git(&["rev-parse", "--git-dir"]) else {
        return;
    };
    let git_dir = Path::new(&git_dir);
    let mut files = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
        files.push(git_dir.join(head_ref));
    }
    for f in files.iter().filter(|f| f.is_file()) {
        println!("cargo:rerun-if-changed={}", f.display());
    }
}

fn build_date() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0)
        });
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after
/// Howard Hinnant's `civil_from_days`; a build script has no date crate.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}
