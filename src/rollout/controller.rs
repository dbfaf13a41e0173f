//! The rollout loop in `serve` (SPEC §6a): on the replica holding the Lease,
//! the same plan as `rollout plan`, then restarts paced by `rateLimit`, at
//! most `maxConcurrent` per namespace, never a workload it restarted that
//! has not yet turned up to date; `mode: report` only counts and reports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::watch;
use tokio::time::Instant;

use super::cluster::{patch_restart, plan_with, recheck};
use super::lease::Elector;
use super::{Assessment, ROLLOUT_KEY};
use crate::config::{Config, RolloutMode};
use crate::events::{EventReason, EventRequest, Events};
use crate::inject::cluster_view::ClusterView;
use crate::metrics::{Metrics, ReasonLabels, StateLabels};
use crate::selector;

/// A restart not yet followed by an up-to-date workload is retried after this.
const RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How often a waiting controller looks at the caches' revision.
const CHANGE_POLL: Duration = Duration::from_millis(250);
/// The least age of a kept plan before a change to the caches makes it
/// again: a change is acted on within about this, and no faster.
const REPLAN_AFTER_CHANGE: Duration = Duration::from_secs(1);

pub struct Controller {
    pub client: kube::Client,
    pub config: Arc<ArcSwap<Config>>,
    pub view: Arc<dyn ClusterView>,
    pub metrics: Arc<Metrics>,
    pub events: Option<Arc<Events>>,
    pub elector: Elector,
    /// The API server's version read at start, as admission has it: the
    /// fingerprint a template gets depends on it (`sidecar.native: auto`).
    pub server_version: Option<(u32, u32)>,
}

fn key(a: &Assessment) -> String {
    format!("{}/{}/{}", a.kind.as_str(), a.namespace, a.name)
}

/// When a round may act. The Lease, renewed as the round starts, lasts three
/// ticks: a round waits for restart slots up to the next tick (so restarts
/// keep `rateLimit`'s spacing, not the tick's), and restarts nothing after
/// two ticks (a slow plan must not act on a Lease about to expire).
#[derive(Clone, Copy, Debug)]
struct Window {
    wait_until: Instant,
    restart_until: Instant,
}

/// A plan kept between rounds: re-listing every workload each tick would
/// cost the API server (and the pace: a plan's seconds are slots lost).
/// It is re-made every two Lease durations, when the config changes, or
/// when the watched Namespaces, Instrumentations or collectors do (the
/// view's revision moved: a namespace opted in is acted on at the next
/// tick); each workload is read again before its restart.
struct Planned {
    at: Instant,
    config: Arc<Config>,
    revision: u64,
    plan: Vec<Assessment>,
}

/// What the loop carries from round to round.
struct State {
    planned: Option<Planned>,
    /// Restarted, not yet seen up to date.
    restarted: HashMap<String, Instant>,
    /// The earliest the next restart may begin.
    next_slot: Instant,
}

/// What one round did, for tests and logs.
#[derive(Debug, Default)]
struct Round {
    restarted: usize,
}

impl Controller {
    /// Runs until `stop`; gives the Lease up on the way out.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut state = State {
            planned: None,
            restarted: HashMap::new(),
            next_slot: Instant::now(),
        };
        loop {
            let started = Instant::now();
            let cfg = self.config.load_full();
            let tick = (cfg.rollout.lease_duration / 3).max(Duration::from_millis(200));
            if cfg.rollout.enabled {
                // No request may stall the loop: a renewal slower than the
                // Lease itself is a lost Lease (the round's own requests are
                // bounded by `cluster::REQUEST_TIMEOUT`).
                let hold =
                    tokio::time::timeout(cfg.rollout.lease_duration, self.elector.try_hold()).await;
                let leader = match hold {
                    Ok(Ok(l)) => l,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "rollout Lease unavailable; not leading");
                        false
                    }
                    Err(_) => {
                        tracing::warn!(
                            "rollout Lease not renewed within its duration; not leading"
                        );
                        false
                    }
                };
                self.metrics.rollout_leader.set(i64::from(leader));
                if leader {
                    let window = Window {
                        wait_until: started + tick,
                        restart_until: started + 2 * tick,
                    };
                    let r = self.round(&cfg, &mut state, window, &mut stop).await;
                    if r.restarted > 0 {
                        tracing::info!(restarted = r.restarted, "rollout round");
                    }
                } else {
                    // A new term starts from a new plan.
                    state.planned = None;
                }
            } else {
                state.planned = None;
                self.metrics.rollout_leader.set(0);
            }
            let stopping =
                *stop.borrow() || self.wait_for_tick(started + tick, &state, &mut stop).await;
            if stopping {
                self.elector.release().await;
                self.metrics.rollout_leader.set(0);
                return;
            }
        }
    }

    /// Waits for the next tick, or less: a change to what the caches watch
    /// (a namespace opted in, an Instrumentation edited) ends the wait once
    /// the kept plan is [`REPLAN_AFTER_CHANGE`] old, so the controller acts
    /// on it within a second or two rather than at the tick, and a cluster
    /// whose namespaces change all the time is re-planned at most that often.
    /// True when `stop` came.
    async fn wait_for_tick(
        &self,
        deadline: Instant,
        state: &State,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let planned = state.planned.as_ref().map(|p| (p.revision, p.at));
        loop {
            let wake = match planned {
                Some((revision, at)) if self.view.revision() != revision => {
                    (at + REPLAN_AFTER_CHANGE).max(Instant::now())
                }
                _ => Instant::now() + CHANGE_POLL,
            };
            if wake >= deadline {
                return tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
            }
            let changed = planned.is_some_and(|(revision, _)| self.view.revision() != revision);
            if changed && wake <= Instant::now() {
                return false;
            }
            let stopped = tokio::select! {
                _ = tokio::time::sleep_until(wake) => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if stopped {
                return true;
            }
        }
    }

    fn selected(&self, cfg: &Config, a: &Assessment) -> bool {
        match &cfg.rollout.namespace_selector {
            None => true,
            Some(sel) => self
                .view
                .namespace(&a.namespace)
                .is_some_and(|ns| selector::matches(sel, &ns.labels)),
        }
    }

    async fn round(
        &self,
        cfg: &Arc<Config>,
        state: &mut State,
        window: Window,
        stop: &mut watch::Receiver<bool>,
    ) -> Round {
        let mut round = Round::default();
        let replan_every = cfg.rollout.lease_duration * 2;
        let revision = self.view.revision();
        let fresh = state.planned.as_ref().is_some_and(|p| {
            Arc::ptr_eq(&p.config, cfg) && p.revision == revision && p.at.elapsed() < replan_every
        });
        if !fresh {
            let plan = match plan_with(
                &self.client,
                &[],
                cfg,
                self.view.as_ref(),
                self.server_version,
            )
            .await
            {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "rollout plan failed; retrying next round");
                    return round;
                }
            };
            let plan: Vec<Assessment> =
                plan.into_iter().filter(|a| self.selected(cfg, a)).collect();
            // Forget restarts that took effect (or were given up on).
            let stale: HashSet<String> = plan.iter().filter(|a| a.stale).map(key).collect();
            let now = Instant::now();
            state
                .restarted
                .retain(|k, at| now.duration_since(*at) < RETRY_AFTER && stale.contains(k));
            state.planned = Some(Planned {
                at: Instant::now(),
                config: Arc::clone(cfg),
                revision,
                plan,
            });
        }
        let State {
            planned,
            restarted,
            next_slot,
        } = state;
        let Some(planned) = planned.as_ref() else {
            return round;
        };
        let plan = &planned.plan;
        let spacing = cfg.rollout.spacing().unwrap_or(Duration::from_secs(12));
        let mut in_progress: BTreeMap<&str, u32> = BTreeMap::new();
        for a in plan
            .iter()
            .filter(|a| a.stale && restarted.contains_key(&key(a)))
        {
            *in_progress.entry(a.namespace.as_str()).or_default() += 1;
        }
        let candidates: Vec<&Assessment> = plan
            .iter()
            .filter(|a| a.stale && a.not_restartable.is_none() && !restarted.contains_key(&key(a)))
            .collect();
        for a in candidates {
            let busy = in_progress.get(a.namespace.as_str()).copied().unwrap_or(0);
            if busy >= cfg.rollout.max_concurrent {
                continue;
            }
            let cause = a.cause.map_or("changed", |c| c.as_str());
            if cfg.rollout.mode == RolloutMode::Report {
                self.event(
                    a,
                    format!("would restart ({ROLLOUT_KEY} mode report): {}", a.reason),
                );
                continue;
            }
            if Instant::now() < *next_slot {
                // The next slot falls before the next tick: wait for it here.
                if *next_slot > window.wait_until {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(*next_slot) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
            if Instant::now() >= window.restart_until {
                break;
            }
            // The plan may be a few ticks old: the workload is read again,
            // and left alone if it is now rolling, paused, scaled to zero,
            // opted out or gone.
            match recheck(&self.client, a).await {
                Ok(None) => {}
                Ok(Some(why)) => {
                    tracing::debug!(workload = %key(a), why, "not restarted: changed since the plan");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(workload = %key(a), error = %e, "cannot read the workload; retrying next round");
                    continue;
                }
            }
            // Slots are spaced from when each restart began, so a PATCH's
            // latency does not slow the pace.
            let slot = Instant::now();
            let at = k8s_openapi::jiff::Timestamp::now().to_string();
            match patch_restart(&self.client, a, &at).await {
                Ok(()) => {
                    restarted.insert(key(a), Instant::now());
                    *in_progress.entry(a.namespace.as_str()).or_default() += 1;
                    *next_slot = slot + spacing;
                    round.restarted += 1;
                    self.metrics
                        .rollout_restarts
                        .get_or_create(&ReasonLabels { reason: cause })
                        .inc();
                    tracing::info!(workload = %key(a), reason = %a.reason, "restarted for instrumentation");
                    self.event(a, format!("restarted: {}", a.reason));
                }
                Err(e) => {
                    tracing::warn!(workload = %key(a), error = %e, "restart failed; retrying next round")
                }
            }
        }
        let restarting = |a: &Assessment| a.stale && restarted.contains_key(&key(a));
        let counts = [
            ("up_to_date", plan.iter().filter(|a| !a.stale).count()),
            (
                "stale",
                plan.iter().filter(|a| a.stale && !restarting(a)).count(),
            ),
            ("restarting", plan.iter().filter(|a| restarting(a)).count()),
        ];
        for (state, n) in counts {
            self.metrics
                .rollout_workloads
                .get_or_create(&StateLabels { state })
                .set(n as i64);
        }
        round
    }

    fn event(&self, a: &Assessment, note: String) {
        let Some(events) = &self.events else { return };
        events.offer(EventRequest {
            namespace: a.namespace.clone(),
            regarding: k8s_openapi::api::core::v1::ObjectReference {
                api_version: Some("apps/v1".into()),
                kind: Some(a.kind.as_str().into()),
                name: Some(a.name.clone()),
                namespace: Some(a.namespace.clone()),
                ..Default::default()
            },
            reason: EventReason::InstrumentationRollout,
            note,
        });
    }
}
