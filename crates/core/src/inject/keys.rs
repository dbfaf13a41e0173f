//! The annotation and label keys we read, and the names of what we add
//! (SPEC §5): one place, so a key is spelled once.

use crate::language::Language;
use crate::spelling::edit_distance;

/// Prefix of the operator's keys.
pub const OPERATOR_PREFIX: &str = "instrumentation.opentelemetry.io/";

/// Prefix of the operator's collector sidecar keys.
pub const SIDECAR_PREFIX: &str = "sidecar.opentelemetry.io/";

/// Prefix of our own keys.
pub const OUR_PREFIX: &str = "otel-admission.io/";

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

/// What we did to a pod, as JSON (`inject/status.rs`).
pub const STATUS_KEY: &str = "otel-admission.io/status";

/// The label carrying the fingerprint, so a selector finds instrumented pods.
pub const INJECTED_LABEL: &str = "otel-admission.io/injected";

/// The pod label naming the collector it got, `<namespace>.<name>`, as the
/// operator sets it.
pub const SIDECAR_INJECTED_LABEL: &str = "sidecar.opentelemetry.io/injected";

/// A workload's own label: `false` keeps `rollout` from restarting it.
/// Spelled here too so the key table below is whole; a test keeps it equal
/// to `rollout::ROLLOUT_KEY`.
pub const ROLLOUT_KEY: &str = "otel-admission.io/rollout";

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

/// What a known key is for, and so where it belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Read from the pod's labels and annotations (and the namespace's): a
    /// request to inject, opt out or tune. On a workload's own metadata it
    /// reaches no pod.
    Pod,
    /// Read from the workload's own labels (`rollout`).
    Workload,
    /// Written on the pods we or the operator change; never a request.
    Written,
    /// The operator reads it on other objects (Instrumentations); never on a
    /// pod, but never unknown either.
    Elsewhere,
}

/// The prefixes whose keys are checked against [`known_keys`]. Not
/// `resource.opentelemetry.io/`: every `<attr>` there is valid.
pub const CHECKED_PREFIXES: [&str; 3] = [OPERATOR_PREFIX, SIDECAR_PREFIX, OUR_PREFIX];

/// The table of known keys, besides the per-language families
/// [`known_keys`] adds: every key under [`CHECKED_PREFIXES`] that we or the
/// OpenTelemetry Operator read or write. A key the operator knows is listed
/// even where we do nothing with it, so it is never called unknown.
const FIXED_KEYS: [(&str, Use); 24] = [
    (CONTAINER_NAMES_KEY, Use::Pod),
    (GO_TARGET_EXE_KEY, Use::Pod),
    (PYTHON_PLATFORM_KEY, Use::Pod),
    (DOTNET_RUNTIME_KEY, Use::Pod),
    (PHP_API_VERSION_KEY, Use::Pod),
    (PHP_PLATFORM_KEY, Use::Pod),
    (PHP_THREAD_SAFETY_KEY, Use::Pod),
    (SIDECAR_KEY, Use::Pod),
    (SIDECAR_INJECTED_LABEL, Use::Written),
    (INJECT_KEY, Use::Pod),
    (AUTO_KEY, Use::Pod),
    (PROBES_KEY, Use::Pod),
    (ISTIO_KEY, Use::Pod),
    (STATUS_KEY, Use::Written),
    (INJECTED_LABEL, Use::Written),
    (ROLLOUT_KEY, Use::Workload),
    // The operator's, on Instrumentation objects: the fields a v1alpha1
    // object was written with, and the default image each language was
    // defaulted with (its upgrade reads them).
    (
        "instrumentation.opentelemetry.io/v1alpha1-fields",
        Use::Elsewhere,
    ),
    (
        "instrumentation.opentelemetry.io/default-auto-instrumentation-java-image",
        Use::Elsewhere,
    ),
    (
        "instrumentation.opentelemetry.io/default-auto-instrumentation-nodejs-image",
        Use::Elsewhere,
    ),
    (
        "instrumentation.opentelemetry.io/default-auto-instrumentation-python-image",
        Use::Elsewhere,
    ),
    (
        "instrumentation.opentelemetry.io/default-auto-instrumentation-dotnet-image",
        Use::Elsewhere,
    ),
    (
        "instrumentation.opentelemetry.io/default-auto-instrumentation-go-image",
        Use::Elsewhere,
    ),
    (
        "instrumentation.opentelemetry.io/default-auto-instrumentation-apache-httpd-image",
        Use::Elsewhere,
    ),
    (
        "instrumentation.opentelemetry.io/default-auto-instrumentation-nginx-image",
        Use::Elsewhere,
    ),
];

/// The one table of known keys: [`FIXED_KEYS`], and for every language
/// `inject-<lang>` and `<lang>-container-names` (those families grow with
/// [`Language::ALL`], never by hand). Built once.
pub fn known_keys() -> &'static [(String, Use)] {
    static TABLE: std::sync::LazyLock<Vec<(String, Use)>> = std::sync::LazyLock::new(|| {
        let mut t: Vec<(String, Use)> = Vec::new();
        for lang in Language::ALL {
            t.push((inject_key(lang).to_string(), Use::Pod));
            t.push((container_names_key(lang), Use::Pod));
        }
        t.extend(FIXED_KEYS.iter().map(|(k, u)| (k.to_string(), *u)));
        t
    });
    &TABLE
}

/// What [`check_key`] says about a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyCheck {
    /// Not under a checked prefix (`app`, `resource.opentelemetry.io/…`).
    Foreign,
    Known(Use),
    /// Under a checked prefix and in no table: a typo, most likely. The
    /// nearest key a user writes, when one is close enough to be meant.
    Unknown {
        nearest: Option<&'static str>,
    },
}

/// Looks a label or annotation key up in [`known_keys`].
///
/// `<lang>-container-names` is an open family, which the operator grows
/// with each language it adds: a `<lang>` that is none of ours and not
/// within a typo of one (`deno-container-names`) may be a newer operator's
/// and is not called unknown; `pyhton-container-names` is, and so is
/// `nginx-container-names` (nginx's is `inject-nginx-container-names`).
pub fn check_key(key: &str) -> KeyCheck {
    if !CHECKED_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return KeyCheck::Foreign;
    }
    if let Some((_, u)) = known_keys().iter().find(|(k, _)| k == key) {
        return KeyCheck::Known(*u);
    }
    // `inject-` read past, so `inject-ngnix-container-names` and
    // `inject-python-container-names` are judged by their language too.
    let family = key
        .strip_prefix(OPERATOR_PREFIX)
        .and_then(|n| n.strip_suffix("-container-names"))
        .map(|lang| lang.strip_prefix("inject-").unwrap_or(lang))
        .filter(|lang| !lang.is_empty());
    if let Some(lang) = family {
        let lower = lang.to_ascii_lowercase();
        let limit = (lower.chars().count() / 3).clamp(1, 3);
        let meant = Language::ALL
            .iter()
            .map(|l| (edit_distance(&lower, l.key()), *l))
            .filter(|(d, _)| *d <= limit)
            .min_by_key(|(d, _)| *d)
            .map(|(_, l)| container_names_key(l));
        return match meant {
            Some(k) => KeyCheck::Unknown {
                nearest: known_keys()
                    .iter()
                    .find(|(known, _)| *known == k)
                    .map(|(known, _)| known.as_str()),
            },
            None => KeyCheck::Known(Use::Pod),
        };
    }
    KeyCheck::Unknown {
        nearest: nearest_key(key),
    }
}

/// The key a user most likely meant: the fewest edits on the part after the
/// prefix, compared case-insensitively, plus one for another prefix (so
/// `otel-admission.io/inject-java` finds the operator's
/// `instrumentation.opentelemetry.io/inject-java`); the same prefix wins a
/// tie. Only keys a user writes ([`Use::Pod`], [`Use::Workload`]) are
/// offered, and only within a third of the name's length (at most 3 edits),
/// so an unrelated name gets no suggestion rather than a wild one.
fn nearest_key(key: &str) -> Option<&'static str> {
    let (prefix, name) = split_prefix(key);
    let name = name.to_ascii_lowercase();
    let limit = (name.chars().count() / 3).clamp(1, 3);
    known_keys()
        .iter()
        .filter(|(_, u)| matches!(u, Use::Pod | Use::Workload))
        .map(|(k, _)| {
            let (p, n) = split_prefix(k);
            let other_prefix = usize::from(p != prefix);
            (edit_distance(&name, n) + other_prefix, other_prefix, k)
        })
        .filter(|(d, _, _)| *d <= limit)
        .min_by_key(|(d, other_prefix, _)| (*d, *other_prefix))
        .map(|(_, _, k)| k.as_str())
}

/// `(prefix, name)`; the prefix is empty for a key with none of ours.
fn split_prefix(key: &str) -> (&str, &str) {
    CHECKED_PREFIXES
        .iter()
        .find_map(|p| key.strip_prefix(p).map(|n| (*p, n)))
        .unwrap_or(("", key))
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

#[cfg(test)]
mod check_key_tests {
    use super::*;
    use rstest::rstest;

    const OP: &str = "instrumentation.opentelemetry.io/";

    /// A misspelt key is unknown and points at the key meant; an unrelated
    /// one is unknown with no guess; keys outside the checked prefixes are
    /// not ours to judge.
    #[rstest]
    #[case::jvm_for_java(
        "instrumentation.opentelemetry.io/inject-jvm",
        Some("instrumentation.opentelemetry.io/inject-java")
    )]
    #[case::swapped_letters(
        "instrumentation.opentelemetry.io/inject-pyhton",
        Some("instrumentation.opentelemetry.io/inject-python")
    )]
    #[case::upper_case(
        "instrumentation.opentelemetry.io/Inject-Python",
        Some("instrumentation.opentelemetry.io/inject-python")
    )]
    #[case::operator_key_under_our_prefix(
        "otel-admission.io/inject-java",
        Some("instrumentation.opentelemetry.io/inject-java")
    )]
    #[case::our_key_under_the_operator_prefix(
        "instrumentation.opentelemetry.io/probes",
        Some("otel-admission.io/probes")
    )]
    #[case::sidecar_typo(
        "sidecar.opentelemetry.io/injekt",
        Some("sidecar.opentelemetry.io/inject")
    )]
    #[case::our_typo("otel-admission.io/probs", Some("otel-admission.io/probes"))]
    #[case::rollout_typo("otel-admission.io/rolout", Some("otel-admission.io/rollout"))]
    #[case::container_names_singular(
        "instrumentation.opentelemetry.io/java-container-name",
        Some("instrumentation.opentelemetry.io/java-container-names")
    )]
    #[case::container_names_language_typo(
        "instrumentation.opentelemetry.io/pyhton-container-names",
        Some("instrumentation.opentelemetry.io/python-container-names")
    )]
    #[case::nginx_without_inject(
        "instrumentation.opentelemetry.io/nginx-container-names",
        Some("instrumentation.opentelemetry.io/inject-nginx-container-names")
    )]
    #[case::nginx_family_typo(
        "instrumentation.opentelemetry.io/inject-ngnix-container-names",
        Some("instrumentation.opentelemetry.io/inject-nginx-container-names")
    )]
    #[case::inject_before_another_language(
        "instrumentation.opentelemetry.io/inject-python-container-names",
        Some("instrumentation.opentelemetry.io/python-container-names")
    )]
    #[case::nothing_close("instrumentation.opentelemetry.io/foo", None)]
    #[case::bare_prefix("otel-admission.io/", None)]
    fn unknown_keys_and_the_key_meant(#[case] key: &str, #[case] nearest: Option<&'static str>) {
        assert_eq!(check_key(key), KeyCheck::Unknown { nearest });
    }

    #[rstest]
    #[case::resource_attributes_are_open("resource.opentelemetry.io/team")]
    #[case::resource_service_name("resource.opentelemetry.io/service.name")]
    #[case::plain_label("app")]
    #[case::other_prefix("app.kubernetes.io/name")]
    #[case::istio("sidecar.istio.io/inject")]
    #[case::prefix_without_slash("otel-admission.io")]
    fn foreign_keys_are_not_judged(#[case] key: &str) {
        assert_eq!(check_key(key), KeyCheck::Foreign);
    }

    /// Every key the OpenTelemetry Operator knows (its
    /// `internal/instrumentation/annotation.go`, `pkg/constants/env.go`,
    /// `pkg/sidecar`, and the 0.162 PHP and Ruby keys), spelled out here
    /// rather than taken from the table, so a key dropped from the table
    /// fails: none may ever be called unknown.
    #[test]
    fn no_key_the_operator_knows_is_unknown() {
        let mut keys: Vec<String> = [
            "container-names",
            "otel-go-auto-target-exe",
            "otel-python-platform",
            "otel-dotnet-auto-runtime",
            "otel-php-api-version",
            "otel-php-platform",
            "otel-php-thread-safety",
            "inject-nginx-container-names",
            "v1alpha1-fields",
        ]
        .iter()
        .map(|k| format!("{OP}{k}"))
        .collect();
        for lang in [
            "java",
            "nodejs",
            "python",
            "dotnet",
            "go",
            "sdk",
            "apache-httpd",
            "nginx",
            "php",
            "ruby",
        ] {
            keys.push(format!("{OP}inject-{lang}"));
            if lang != "nginx" {
                keys.push(format!("{OP}{lang}-container-names"));
            }
        }
        for lang in [
            "java",
            "nodejs",
            "python",
            "dotnet",
            "go",
            "apache-httpd",
            "nginx",
        ] {
            keys.push(format!("{OP}default-auto-instrumentation-{lang}-image"));
        }
        keys.push("sidecar.opentelemetry.io/inject".into());
        keys.push("sidecar.opentelemetry.io/injected".into());
        // A language a newer operator may add: an open family.
        keys.push(format!("{OP}deno-container-names"));
        for key in &keys {
            assert!(
                matches!(check_key(key), KeyCheck::Known(_)),
                "{key}: {:?}",
                check_key(key)
            );
        }
    }

    #[test]
    fn our_keys_are_known_with_their_use() {
        for (key, want) in [
            (INJECT_KEY, Use::Pod),
            (AUTO_KEY, Use::Pod),
            (PROBES_KEY, Use::Pod),
            (ISTIO_KEY, Use::Pod),
            (STATUS_KEY, Use::Written),
            (INJECTED_LABEL, Use::Written),
            (ROLLOUT_KEY, Use::Workload),
        ] {
            assert_eq!(check_key(key), KeyCheck::Known(want), "{key}");
        }
    }
}
