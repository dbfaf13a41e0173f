//! Requests and limits of the containers we add.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::BTreeMap;

/// Requests and limits: the Instrumentation's, else the operator's defaults
/// (its defaulting webhook fills them per field group, reference §2).
pub fn resources(
    configured: Option<&ResourceRequirements>,
    limits: (&str, &str),
    requests: (&str, &str),
) -> ResourceRequirements {
    let pair = |(cpu, mem): (&str, &str)| {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(cpu.into())),
            ("memory".to_string(), Quantity(mem.into())),
        ])
    };
    let c = configured.cloned().unwrap_or_default();
    ResourceRequirements {
        limits: Some(c.limits.unwrap_or_else(|| pair(limits))),
        requests: Some(c.requests.unwrap_or_else(|| pair(requests))),
        claims: c.claims,
    }
}
