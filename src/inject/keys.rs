//! The annotation and label keys we read, and the names of what we add
//! (SPEC §5): one place, so a key is spelled once.

use crate::language::Language;

/// Prefix of the operator's keys.
pub const OPERATOR_PREFIX: &str = "instrumentation.opentelemetry.io/";

/// Our opt-out (pod) and opt-in/out (namespace label) key.
pub const INJECT_KEY: &str = "otel-admission.io/inject";

/// The kubelet marks static pods' mirrors with this annotation.
pub const MIRROR_KEY: &str = "kubernetes.io/config.mirror";

pub const GO_TARGET_EXE_KEY: &str = "instrumentation.opentelemetry.io/otel-go-auto-target-exe";

pub const PYTHON_PLATFORM_KEY: &str = "instrumentation.opentelemetry.io/otel-python-platform";

pub const DOTNET_RUNTIME_KEY: &str = "instrumentation.opentelemetry.io/otel-dotnet-auto-runtime";

pub const CONTAINER_NAMES_KEY: &str = "instrumentation.opentelemetry.io/container-names";

pub const PHP_API_VERSION_KEY: &str = "instrumentation.opentelemetry.io/otel-php-api-version";

pub const PHP_PLATFORM_KEY: &str = "instrumentation.opentelemetry.io/otel-php-platform";

pub const PHP_THREAD_SAFETY_KEY: &str = "instrumentation.opentelemetry.io/otel-php-thread-safety";

/// The node labels the kubelet sets to its OS (`runtime.GOOS`): the stable
/// one, and the deprecated beta one it still sets, which older Windows
/// manifests select on.
pub const OS_LABELS: [&str; 2] = ["kubernetes.io/os", "beta.kubernetes.io/os"];

/// Our opt-in to language auto-detection.
pub const AUTO_KEY: &str = "otel-admission.io/inject-auto";

/// The operator's collector sidecar key: `true`, `false`, `<name>` or `<ns>/<name>`.
pub const SIDECAR_KEY: &str = "sidecar.opentelemetry.io/inject";

/// Our opt-in to default probes.
pub const PROBES_KEY: &str = "otel-admission.io/probes";

/// Our opt-in to the Prometheus and Istio annotations.
pub const ISTIO_KEY: &str = "otel-admission.io/istio";

/// Istio's per-pod injection switch (label or annotation).
pub const ISTIO_INJECT_KEY: &str = "sidecar.istio.io/inject";

/// Istio's namespace label; `enabled` puts the namespace in the mesh.
pub const ISTIO_NS_LABEL: &str = "istio-injection";

/// The sidecar's container name, as the operator names it.
pub const SIDECAR_NAME: &str = "otc-container";

/// The volume holding a ConfigMap collector config.
pub const SIDECAR_CONFIG_VOLUME: &str = "otc-container-config";

/// Containers that are never a default target (operator issue #2243).
pub const KNOWN_SIDECARS: [&str; 5] = [
    "istio-proxy",
    "linkerd-proxy",
    "otc-container",
    "opentelemetry-auto-instrumentation",
    "cloudsql-proxy",
];

/// The annotation key a language is enabled with.
///
/// Spelled out, not formatted per call: `decide` reads all ten for every pod.
pub fn inject_key(lang: Language) -> &'static str {
    match lang {
        Language::Java => "instrumentation.opentelemetry.io/inject-java",
        Language::Nodejs => "instrumentation.opentelemetry.io/inject-nodejs",
        Language::Php => "instrumentation.opentelemetry.io/inject-php",
        Language::Python => "instrumentation.opentelemetry.io/inject-python",
        Language::Ruby => "instrumentation.opentelemetry.io/inject-ruby",
        Language::Dotnet => "instrumentation.opentelemetry.io/inject-dotnet",
        Language::Go => "instrumentation.opentelemetry.io/inject-go",
        Language::ApacheHttpd => "instrumentation.opentelemetry.io/inject-apache-httpd",
        Language::Nginx => "instrumentation.opentelemetry.io/inject-nginx",
        Language::Sdk => "instrumentation.opentelemetry.io/inject-sdk",
    }
}

/// The per-language container list key; nginx's has an odd `inject-` prefix upstream.
pub fn container_names_key(lang: Language) -> String {
    match lang {
        Language::Nginx => format!("{OPERATOR_PREFIX}inject-nginx-container-names"),
        l => format!("{OPERATOR_PREFIX}{}-container-names", l.key()),
    }
}

#[cfg(test)]
mod inject_key_tests {
    use super::*;

    /// The spelled-out keys are the prefix and the language's key.
    #[test]
    fn every_inject_key_is_the_prefix_and_the_language() {
        for lang in Language::ALL {
            assert_eq!(
                inject_key(lang),
                format!("{OPERATOR_PREFIX}inject-{}", lang.key())
            );
        }
    }
}
