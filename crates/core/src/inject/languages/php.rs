//! PHP (operator 0.162+): the OpenTelemetry extension and its
//! `opentelemetry.ini`, copied from the build the annotations select
//! (`otel-php-api-version`, `otel-php-platform`, `otel-php-thread-safety`),
//! loaded through `PHP_INI_SCAN_DIR`. The init container's script does the
//! operator's steps with every value passed as an argument, never parsed by
//! the shell.

use k8s_openapi::api::core::v1::Pod;

use super::{ByLibc, CopiedAgent, EnvStep, LangError, LangResult, inject_copied, no_step};
use crate::inject::editor::Editor;
use crate::inject::plan::{LanguagePlan, Plan};
use crate::language::Language;

/// Overridable with `spec.php.image` (the operator names no registry image yet).
pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-php:1.4.0";
pub const INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-php";
pub const VOLUME: &str = "opentelemetry-auto-instrumentation-php";
pub const MOUNT: &str = "/otel-auto-instrumentation-php";
pub const SOURCE: &str = "/autoinstrumentation/.";
/// `PHP_INI_SCAN_DIR`: the default scan directory (empty) and ours.
pub const INI_SCAN_DIR: &str = ":/otel-auto-instrumentation-php";

/// `$1` source, `$2` mount, `$3` libc, `$4` API version, `$5` thread safety.
pub const SCRIPT: &str = r#"set -e
cp -rf "$1/$4/$3/$5"/* "$2"/
cp -rf "$1/opentelemetry.ini" "$2"/
"#;

/// The agent, as data; its init container runs [`SCRIPT`] instead of `cp`.
pub const AGENT: CopiedAgent = CopiedAgent {
    language: Language::Php,
    default_image: DEFAULT_IMAGE,
    name: INIT_CONTAINER,
    mount: MOUNT,
    source: ByLibc::Same(SOURCE),
    requests: ("50m", "64Mi"),
    mount_per_container: false,
    early: &[],
    // Set only where absent: a user's scan directory is theirs.
    vars: &[
        EnvStep::Set("PHP_INI_SCAN_DIR", ByLibc::Same(INI_SCAN_DIR)),
        EnvStep::Set("OTEL_PHP_AUTOLOAD_ENABLED", ByLibc::Same("true")),
    ],
};

pub fn inject(
    ed: &mut Editor<'_>,
    pod: &Pod,
    plan: &Plan,
    lp: &LanguagePlan,
    warnings: &mut Vec<String>,
) -> LangResult {
    let Some(build) = lp.php.as_ref() else {
        return Err(LangError::NotInjected(
            "php: no extension build selected".into(),
        ));
    };
    let spec = lp
        .instrumentation
        .instrumentation
        .spec
        .language(Language::Php);
    let mut agent = AGENT.agent(spec, lp.libc);
    agent.command = vec!["/bin/sh".into(), "-c".into()];
    agent.args = Some(vec![
        SCRIPT.into(),
        "--".into(),
        SOURCE.into(),
        MOUNT.into(),
        build.platform.into(),
        build.api_version.clone(),
        build.thread_safety.into(),
    ]);
    inject_copied(ed, pod, plan, lp, warnings, &AGENT, agent, &no_step)
}
