//! Prometheus metrics (SPEC §9), prefix `otel_admission_`.
//!
//! Label values come from closed enums (`as_str`), so the set of series is
//! bounded and known in advance: dashboards and alerts can rely on it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// 50µs to 1s: an injection takes microseconds, a timeout takes seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// The two admission endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Mutate,
    Validate,
}

/// How a request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestResult {
    /// Allowed with no change.
    Allowed,
    /// Allowed with a patch.
    Patched,
    /// Denied (403 in the review).
    Denied,
    /// HTTP 400/413/415: not an AdmissionReview we could read.
    BadRequest,
    /// Our own failure, answered per `failureMode`.
    Error,
    /// The per-request deadline passed; answered per `failureMode` in time.
    Timeout,
    /// Too many requests waiting for a worker; answered per `failureMode` at once.
    Overloaded,
    /// The client went away (or the connection was cut) before the answer.
    Abandoned,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    pub result: &'static str,
}

/// `policy` is a package path or constraint name: bounded by the policy set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PolicyLabels {
    pub policy: String,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

/// A `policies.sync` kind, as `group/version/Kind`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InventoryLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InventoryErrorLabels {
    pub kind: String,
    /// `not_served` (discovery failed, or a 404 on the first list),
    /// `forbidden` (a 403 on the first list: RBAC) or `decode` (an object
    /// left out).
    pub reason: &'static str,
}

/// A cluster cache's kind (`namespace`, `instrumentation`,
/// `opentelemetrycollector`) and why its list or watch failed.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClusterWatchErrorLabels {
    pub kind: &'static str,
    /// `not_served` (404), `forbidden` (403) or `other`.
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InjectionLabels {
    pub feature: &'static str,
    pub language: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub reason: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SkipLabels {
    pub reason: &'static str,
}

/// `listener` is `webhook` (TLS) or `admin`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: &'static str,
}

/// `reason`: `evicted` (a connection that had sent no request, closed to
/// make room) or `rejected` (a new one closed at once: all had sent one).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ShedLabels {
    pub listener: &'static str,
    pub reason: &'static str,
}

/// `build_info`'s labels: the crate version and the git commit (build.rs).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildInfoLabels {
    pub version: &'static str,
    pub commit: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub cluster_ready: Gauge,
    pub cluster_objects: Family<KindLabels, Gauge>,
    pub cluster_watch_errors: Family<ClusterWatchErrorLabels, Counter>,
    pub cluster_kind_available: Family<KindLabels, Gauge>,
    pub inventory_objects: Family<InventoryLabels, Gauge>,
    pub inventory_errors: Family<InventoryErrorLabels, Counter>,
    pub injections: Family<InjectionLabels, Counter>,
    pub skips: Family<SkipLabels, Counter>,
    pub requests: Family<RequestLabels, Counter>,
    pub requests_in_flight: Family<EndpointLabels, Gauge>,
    pub request_duration: Family<EndpointLabels, Histogram>,
    pub config_reload_errors: Counter,
    pub tls_reload_errors: Counter,
    pub tls_expiry: Gauge,
    pub policy_evaluations: Family<PolicyLabels, Counter>,
    pub policy_evaluation_duration: Histogram,
    pub policy_reload_errors: Counter,
    pub events: Family<EventLabels, Counter>,
    pub rollout_workloads: Family<StateLabels, Gauge>,
    pub rollout_restarts: Family<ReasonLabels, Counter>,
    pub rollout_leader: Gauge,
    pub connections_open: Family<ListenerLabels, Gauge>,
    pub connections_shed: Family<ShedLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

// === impl Endpoint ===

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mutate => "mutate",
            Self::Validate => "validate",
        }
    }
}

impl RequestResult {
    pub const ALL: [RequestResult; 8] = [
        Self::Allowed,
        Self::Patched,
        Self::Denied,
        Self::BadRequest,
        Self::Error,
        Self::Timeout,
        Self::Overloaded,
        Self::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Patched => "patched",
            Self::Denied => "denied",
            Self::BadRequest => "bad_request",
            Self::Error => "error",
            Self::Timeout => "timeout",
            Self::Overloaded => "overloaded",
            Self::Abandoned => "abandoned",
        }
    }
}

// === impl Metrics ===

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("otel_admission");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Admission requests by endpoint and result",
            requests.clone(),
        );
        let requests_in_flight = Family::<EndpointLabels, Gauge>::default();
        registry.register(
            "requests_in_flight",
            "Admission requests being answered, by endpoint",
            requests_in_flight.clone(),
        );
        let request_duration = Family::<EndpointLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(DURATION_BUCKETS)) as fn() -> Histogram,
        );
        registry.register(
            "request_duration_seconds",
            "Time from request received to response written, by endpoint",
            request_duration.clone(),
        );
        let injections = Family::<InjectionLabels, Counter>::default();
        registry.register(
            "injections",
            "Features injected into pods, by feature and language",
            injections.clone(),
        );
        let skips = Family::<SkipLabels, Counter>::default();
        registry.register(
            "skips",
            "Pods or features not injected, by closed-set reason",
            skips.clone(),
        );
        let config_reload_errors = Counter::default();
        registry.register(
            "config_reload_errors",
            "Config file reloads rejected; the previous config keeps serving",
            config_reload_errors.clone(),
        );
        let tls_reload_errors = Counter::default();
        registry.register(
            "tls_reload_errors",
            "Certificate reloads rejected; the previous pair keeps serving",
            tls_reload_errors.clone(),
        );
        let tls_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "Expiry of the serving certificate, unix seconds",
            tls_expiry.clone(),
        );
        let cluster_ready = Gauge::default();
        registry.register(
            "cluster_cache_ready",
            "1 once the Namespace and Instrumentation caches have synced",
            cluster_ready.clone(),
        );
        let cluster_objects = Family::<KindLabels, Gauge>::default();
        registry.register(
            "cluster_cache_objects",
            "Objects held in the cluster caches, by kind",
            cluster_objects.clone(),
        );
        let cluster_watch_errors = Family::<ClusterWatchErrorLabels, Counter>::default();
        registry.register(
            "cluster_watch_errors",
            "Failed lists and watches of the cluster caches, by kind and reason (not_served: 404, forbidden: 403, other)",
            cluster_watch_errors.clone(),
        );
        let cluster_kind_available = Family::<KindLabels, Gauge>::default();
        registry.register(
            "cluster_kind_available",
            "1 once a cluster cache's kind has been listed, 0 while the API server does not serve it or RBAC forbids it (the cache counts as synced and empty); absent until the first answer",
            cluster_kind_available.clone(),
        );
        let inventory_objects = Family::<InventoryLabels, Gauge>::default();
        registry.register(
            "inventory_objects",
            "Objects in data.inventory, by policies.sync kind",
            inventory_objects.clone(),
        );
        let inventory_errors = Family::<InventoryErrorLabels, Counter>::default();
        registry.register(
            "inventory_errors",
            "policies.sync problems: a kind the API server does not serve or RBAC forbids, an object left out",
            inventory_errors.clone(),
        );
        let policy_evaluations = Family::<PolicyLabels, Counter>::default();
        registry.register(
            "policy_evaluations",
            "Policy evaluations by policy and result (allow, deny, audit: a deny not enforced, warn, dryrun, error)",
            policy_evaluations.clone(),
        );
        let policy_evaluation_duration = Histogram::new(DURATION_BUCKETS);
        registry.register(
            "policy_evaluation_duration_seconds",
            "Time to evaluate every policy for one request",
            policy_evaluation_duration.clone(),
        );
        let policy_reload_errors = Counter::default();
        registry.register(
            "policy_reload_errors",
            "Policy directory reloads rejected; the previous policies keep serving",
            policy_reload_errors.clone(),
        );
        let events = Family::<EventLabels, Counter>::default();
        registry.register(
            "events",
            "Kubernetes Events about skipped or failed injections, by reason and result (sent, dropped)",
            events.clone(),
        );
        let rollout_workloads = Family::<StateLabels, Gauge>::default();
        registry.register(
            "rollout_workloads",
            "Workloads the rollout controller sees, by state (up_to_date, stale, restarting)",
            rollout_workloads.clone(),
        );
        let rollout_restarts = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "rollout_restarts",
            "Workloads restarted by the rollout controller, by reason",
            rollout_restarts.clone(),
        );
        let rollout_leader = Gauge::default();
        registry.register(
            "rollout_leader",
            "1 on the replica holding the rollout Lease",
            rollout_leader.clone(),
        );
        let connections_open = Family::<ListenerLabels, Gauge>::default();
        registry.register(
            "connections_open",
            "Open connections by listener (webhook, admin); each is capped from the file descriptor limit",
            connections_open.clone(),
        );
        let connections_shed = Family::<ShedLabels, Counter>::default();
        registry.register(
            "connections_shed",
            "Connections closed because their listener was at its cap, by listener and reason (evicted: had sent no request; rejected: new, all had)",
            connections_shed.clone(),
        );
        // Constant 1: a dashboard joins on it to tell which build a replica
        // runs (the `version` command prints the same commit).
        let build_info = Family::<BuildInfoLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildInfoLabels {
                version: env!("CARGO_PKG_VERSION"),
                commit: env!("OTEL_ADMISSION_GIT_COMMIT"),
            })
            .set(1);
        registry.register(
            "build_info",
            "1, labelled with the version and git commit of the running build",
            build_info,
        );
        let m = Self {
            connections_open,
            connections_shed,
            rollout_workloads,
            rollout_restarts,
            rollout_leader,
            events,
            registry,
            cluster_ready,
            cluster_objects,
            cluster_watch_errors,
            cluster_kind_available,
            inventory_objects,
            inventory_errors,
            policy_evaluations,
            policy_evaluation_duration,
            policy_reload_errors,
            injections,
            skips,
            requests,
            requests_in_flight,
            request_duration,
            config_reload_errors,
            tls_reload_errors,
            tls_expiry,
        };
        m.zero_closed_series();
        m
    }

    /// Creates every series whose labels come from a closed enum, at zero,
    /// so rates and alerts see a 0 rather than no data before the first event.
    fn zero_closed_series(&self) {
        for endpoint in [Endpoint::Mutate, Endpoint::Validate] {
            for result in RequestResult::ALL {
                let _ = self.requests.get_or_create(&RequestLabels {
                    endpoint: endpoint.as_str(),
                    result: result.as_str(),
                });
            }
            let _ = self.request_duration.get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            });
            let _ = self.requests_in_flight.get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            });
        }
        for reason in crate::inject::plan::SkipReason::ALL {
            let _ = self.skips.get_or_create(&SkipLabels {
                reason: reason.as_str(),
            });
        }
        for language in crate::language::Language::ALL {
            let _ = self.injections.get_or_create(&InjectionLabels {
                feature: "instrumentation",
                language: language.key(),
            });
        }
        for f in crate::inject::plan::Feature::POD_FEATURES {
            let _ = self.injections.get_or_create(&InjectionLabels {
                feature: f.as_str(),
                language: f.language(),
            });
        }
        for state in ["up_to_date", "stale", "restarting"] {
            let _ = self.rollout_workloads.get_or_create(&StateLabels { state });
        }
        for kind in ["namespace", "instrumentation"] {
            let _ = self.cluster_objects.get_or_create(&KindLabels { kind });
        }
        for listener in ["webhook", "admin"] {
            let _ = self.connections_open(listener);
            for reason in ["evicted", "rejected"] {
                let _ = self
                    .connections_shed
                    .get_or_create(&ShedLabels { listener, reason });
            }
        }
    }

    /// Creates `events_total` at zero for each Event reason. The reasons are
    /// the events adapter's closed enum; it registers them (through the
    /// composition root) so this module does not depend on it.
    pub fn zero_events(&self, reasons: impl IntoIterator<Item = &'static str>) {
        for reason in reasons {
            for result in ["sent", "dropped"] {
                let _ = self.events.get_or_create(&EventLabels { reason, result });
            }
        }
    }

    /// Creates `cluster_watch_errors_total` at zero for each cache kind and
    /// failure reason; the cluster module owns both closed sets and registers
    /// them when its watchers start, as [`Metrics::zero_events`] does.
    pub fn zero_cluster_watch_errors(&self, kinds: &[&'static str], reasons: &[&'static str]) {
        for &kind in kinds {
            for &reason in reasons {
                let _ = self
                    .cluster_watch_errors
                    .get_or_create(&ClusterWatchErrorLabels { kind, reason });
            }
        }
    }

    /// Creates `rollout_restarts_total` at zero for each staleness cause, as
    /// [`Metrics::zero_events`] does for Events.
    pub fn zero_rollout_restarts(&self, causes: impl IntoIterator<Item = &'static str>) {
        for reason in causes {
            let _ = self
                .rollout_restarts
                .get_or_create(&ReasonLabels { reason });
        }
    }

    /// Counts one finished request.
    pub fn observe_request(&self, endpoint: Endpoint, result: RequestResult, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.as_str(),
                result: result.as_str(),
            })
            .inc();
        self.request_duration
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.as_str(),
            })
            .observe(seconds);
    }

    /// Counts one Event sent or dropped.
    pub fn event(&self, reason: &'static str, result: &'static str) {
        self.events
            .get_or_create(&EventLabels { reason, result })
            .inc();
    }

    /// Counts one policy's evaluation for one request.
    pub fn observe_policy(&self, policy: &str, result: &'static str) {
        self.policy_evaluations
            .get_or_create(&PolicyLabels {
                policy: policy.to_string(),
                result,
            })
            .inc();
    }

    /// Counts one injected feature; called only from `inject::outcome::Outcome::record`.
    pub fn injection(&self, feature: &'static str, language: &'static str) {
        self.injections
            .get_or_create(&InjectionLabels { feature, language })
            .inc();
    }

    /// The open-connections gauge of a listener, to hold for its life.
    pub fn connections_open(&self, listener: &'static str) -> Gauge {
        self.connections_open
            .get_or_create(&ListenerLabels { listener })
            .clone()
    }

    /// Counts one connection closed because its listener was at its cap.
    pub fn connection_shed(&self, listener: &'static str, reason: &'static str) {
        self.connections_shed
            .get_or_create(&ShedLabels { listener, reason })
            .inc();
    }

    /// Counts one skipped pod or feature; `reason` is a `SkipReason::as_str`.
    pub fn skip(&self, reason: &'static str) {
        self.skips.get_or_create(&SkipLabels { reason }).inc();
    }

    /// The registry in Prometheus/OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_spec() {
        let m = Metrics::new();
        m.observe_request(Endpoint::Mutate, RequestResult::Patched, 0.0001);
        m.tls_expiry.set(1_900_000_000);
        m.observe_policy("kubernetes.admission.images", "deny");
        m.policy_evaluation_duration.observe(0.0002);
        m.injection("instrumentation", "python");
        m.skip("not_selected");
        let text = m.encode();
        for needle in [
            "otel_admission_requests_total{endpoint=\"mutate\",result=\"patched\"} 1",
            "otel_admission_request_duration_seconds_bucket{le=\"0.00005\",endpoint=\"mutate\"} 0",
            "otel_admission_request_duration_seconds_bucket{le=\"0.0001\",endpoint=\"mutate\"} 1",
            "otel_admission_config_reload_errors_total 0",
            "otel_admission_injections_total{feature=\"instrumentation\",language=\"python\"} 1",
            "otel_admission_skips_total{reason=\"not_selected\"} 1",
            "otel_admission_tls_reload_errors_total 0",
            "otel_admission_policy_evaluations_total{policy=\"kubernetes.admission.images\",result=\"deny\"} 1",
            "otel_admission_policy_evaluation_duration_seconds_count 1",
            "otel_admission_policy_reload_errors_total 0",
            "otel_admission_tls_certificate_expiry_timestamp_seconds 1900000000",
            concat!(
                "otel_admission_build_info{version=\"",
                env!("CARGO_PKG_VERSION"),
                "\",commit=\"",
                env!("OTEL_ADMISSION_GIT_COMMIT"),
                "\"} 1"
            ),
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
