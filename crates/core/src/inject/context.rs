//! What [`crate::inject::decide::decide`] reads besides the pod.

use crate::config::Config;
use crate::inject::cluster_view::ClusterView;
use crate::inject::plan::Owner;

/// What decide reads besides the pod.
pub struct Context<'a> {
    /// The pod's namespace: `request.namespace`, since `metadata.namespace` may be empty.
    pub namespace: &'a str,
    pub config: &'a Config,
    pub view: &'a dyn ClusterView,
    /// The owning workload when known from outside the pod (the CLI's Deployment).
    pub owner_hint: Option<&'a Owner>,
    /// The API server's `(major, minor)`, read once at start; decides
    /// `sidecar.native: auto`. `None` (offline `inject`, `--cluster off`)
    /// counts as native: every supported Kubernetes (≥ 1.29) has it.
    pub server_version: Option<(u32, u32)>,
}

/// The first version where native sidecars (`restartPolicy: Always` init
/// containers) are on by default; the operator uses the same threshold.
pub const NATIVE_SIDECAR_VERSION: (u32, u32) = (1, 29);

/// `major`/`minor` of the API server's version info; providers add suffixes
/// such as `29+`, which are ignored.
pub fn parse_server_version(major: &str, minor: &str) -> Option<(u32, u32)> {
    let digits = |s: &str| -> Option<u32> {
        let d: String = s.chars().take_while(char::is_ascii_digit).collect();
        d.parse().ok()
    };
    Some((digits(major)?, digits(minor)?))
}
