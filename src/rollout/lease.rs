//! Leader election on a `coordination.k8s.io/v1` `Lease`, so that of all
//! replicas exactly one runs the rollout loop (SPEC §6a).
//!
//! Hand-written on kube-rs' `Api<Lease>`: kube-rs has no leader election, and
//! the protocol is small. Every write replaces the Lease at the
//! `resourceVersion` just read, so two replicas racing for an expired Lease
//! cannot both win: the loser gets 409 and stays a follower.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// The Lease's name.
pub const NAME: &str = "otel-admission-rollout";

pub struct Elector {
    api: Api<Lease>,
    identity: String,
    duration: Duration,
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        identity: String,
        duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            identity,
            duration,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    fn spec(&self, acquire: Option<MicroTime>, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(self.duration.as_secs().max(1) as i32),
            acquire_time: acquire,
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// Acquires the Lease when it is free or expired, renews it when held.
    /// `Ok(true)` means this replica leads until the next call.
    pub async fn try_hold(&self) -> Result<bool, kube::Error> {
        let Some(current) = self.api.get_opt(NAME).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(NAME.into()),
                    ..Default::default()
                },
                spec: Some(self.spec(Some(now()), 0)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let lasts = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(t.0);
            age.as_secs_f64() > lasts.as_secs_f64()
        });
        let mine = holder == self.identity;
        if !mine && !holder.is_empty() && !expired {
            return Ok(false);
        }
        let (acquire, transitions) = if mine {
            (
                spec.acquire_time.clone(),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (Some(now()), spec.lease_transitions.unwrap_or(0) + 1)
        };
        let lease = Lease {
            metadata: current.metadata.clone(),
            spec: Some(self.spec(acquire, transitions)),
        };
        match self.api.replace(NAME, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up, if held, so another replica takes over at once
    /// instead of waiting for it to expire.
    pub async fn release(&self) {
        let Ok(Some(current)) = self.api.get_opt(NAME).await else {
            return;
        };
        let mut spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        let lease = Lease {
            metadata: current.metadata,
            spec: Some(spec),
        };
        if let Err(e) = self.api.replace(NAME, &PostParams::default(), &lease).await {
            tracing::warn!(error = %e, "cannot release the rollout Lease; it expires on its own");
        }
    }
}
