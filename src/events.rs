//! Warning Events for pods that asked for injection and did not get it all
//! (SPEC §6): `InjectionSkipped` or `InjectionFailed` on the pod's
//! controlling owner, since the pod has no name yet and a warning on its
//! CREATE reaches only the ReplicaSet controller's log.
//!
//! Off the admission path: [`Events::offer`] never waits. A bounded queue
//! feeds one task that deduplicates by owner, reason and message (one Event,
//! then `series` updates as `events.k8s.io/v1` describes), paces its API
//! calls, and drops what does not fit, counting it in `events_total`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;

/// Why an Event is sent. Closed: these are the `reason` label values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventReason {
    /// The whole pod was left alone for a reason the user should see.
    InjectionSkipped,
    /// Some feature the pod asked for could not be injected.
    InjectionFailed,
    /// The rollout controller restarted (or, in report mode, would restart) a workload.
    InstrumentationRollout,
}

impl EventReason {
    pub const ALL: [EventReason; 3] = [
        Self::InjectionSkipped,
        Self::InjectionFailed,
        Self::InstrumentationRollout,
    ];

    /// Failures are warnings; a rollout is news.
    pub fn type_(self) -> &'static str {
        match self {
            Self::InstrumentationRollout => "Normal",
            _ => "Warning",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InjectionSkipped => "InjectionSkipped",
            Self::InjectionFailed => "InjectionFailed",
            Self::InstrumentationRollout => "InstrumentationRollout",
        }
    }
}

/// One Event to send.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRequest {
    pub namespace: String,
    /// The pod's controlling owner.
    pub regarding: ObjectReference,
    pub reason: EventReason,
    pub note: String,
}

/// Queue size and pacing.
#[derive(Clone, Copy, Debug)]
pub struct EventSettings {
    pub queue: usize,
    /// At most this many API calls per second, evenly spaced.
    pub per_second: u32,
    /// Repeats within this window update the first Event's series.
    pub window: Duration,
    /// A series is patched at most this often.
    pub series_interval: Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            queue: 1024,
            per_second: 10,
            window: Duration::from_secs(600),
            series_interval: Duration::from_secs(30),
        }
    }
}

/// The sending side, shared by the admission handlers.
#[derive(Debug)]
pub struct Events {
    tx: mpsc::Sender<EventRequest>,
    metrics: Arc<Metrics>,
}

/// The longest note the API server keeps (it rejects more than 1 kB).
const MAX_NOTE: usize = 1024;

const CONTROLLER: &str = "otel-admission.io/webhook";

impl Events {
    /// Starts the sender task; it ends when `stop` turns true.
    pub fn start(
        client: kube::Client,
        settings: EventSettings,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let task = tokio::spawn(run(client, settings, rx, metrics.clone(), stop));
        (Arc::new(Self { tx, metrics }), task)
    }

    /// Queues an Event; a full queue drops it and counts, never waits.
    pub fn offer(&self, e: EventRequest) {
        let reason = e.reason;
        if self.tx.try_send(e).is_err() {
            self.metrics.event(reason.as_str(), "dropped");
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    owner: String,
    reason: EventReason,
    note: String,
}

struct Entry {
    /// The Event's name once created.
    name: Option<String>,
    count: i32,
    first_seen: tokio::time::Instant,
    last_patch: tokio::time::Instant,
    dirty: bool,
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn clamp_note(note: &str) -> String {
    let one_line: String = note
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if one_line.len() <= MAX_NOTE {
        return one_line;
    }
    let mut cut = MAX_NOTE - 3;
    while !one_line.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &one_line[..cut])
}

fn event_for(e: &EventRequest, instance: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}.", e.regarding.name.as_deref().unwrap_or("pod"))),
            namespace: Some(e.namespace.clone()),
            ..Default::default()
        },
        event_time: Some(micro_now()),
        action: Some(
            match e.reason {
                EventReason::InstrumentationRollout => "Restart",
                _ => "Inject",
            }
            .into(),
        ),
        reason: Some(e.reason.as_str().into()),
        note: Some(clamp_note(&e.note)),
        regarding: Some(e.regarding.clone()),
        reporting_controller: Some(CONTROLLER.into()),
        reporting_instance: Some(instance.into()),
        type_: Some(e.reason.type_().into()),
        ..Default::default()
    }
}

async fn run(
    client: kube::Client,
    settings: EventSettings,
    mut rx: mpsc::Receiver<EventRequest>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    let instance = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "otel-admission".into());
    let spacing = Duration::from_secs(1) / settings.per_second.max(1);
    let mut next_call = tokio::time::Instant::now();
    let mut seen: HashMap<Key, Entry> = HashMap::new();
    let mut flush = tokio::time::interval(settings.series_interval);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let req = tokio::select! {
            r = rx.recv() => match r {
                Some(r) => Some(r),
                None => return,
            },
            _ = flush.tick() => None,
            _ = stop.wait_for(|s| *s) => return,
        };
        let now = tokio::time::Instant::now();
        seen.retain(|_, e| now.duration_since(e.first_seen) < settings.window || e.dirty);
        let mut calls: Vec<(Key, bool)> = Vec::new();
        if let Some(req) = req {
            let key = Key {
                namespace: req.namespace.clone(),
                owner: format!(
                    "{}/{}",
                    req.regarding.kind.as_deref().unwrap_or(""),
                    req.regarding.name.as_deref().unwrap_or("")
                ),
                reason: req.reason,
                note: req.note.clone(),
            };
            match seen.get_mut(&key) {
                Some(e) => {
                    e.count += 1;
                    e.dirty = true;
                    if e.name.is_some()
                        && now.duration_since(e.last_patch) >= settings.series_interval
                    {
                        calls.push((key.clone(), false));
                    }
                }
                None => {
                    // Created at once, so the first occurrence is never delayed.
                    tokio::time::sleep_until(next_call).await;
                    next_call = tokio::time::Instant::now() + spacing;
                    let api: Api<Event> = Api::namespaced(client.clone(), &req.namespace);
                    let name = match api
                        .create(&PostParams::default(), &event_for(&req, &instance))
                        .await
                    {
                        Ok(ev) => {
                            metrics.event(req.reason.as_str(), "sent");
                            ev.metadata.name
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, namespace = %req.namespace, "cannot create Event");
                            metrics.event(req.reason.as_str(), "dropped");
                            None
                        }
                    };
                    seen.insert(
                        key,
                        Entry {
                            name,
                            count: 1,
                            first_seen: now,
                            last_patch: now,
                            dirty: false,
                        },
                    );
                }
            }
        } else {
            for (k, e) in &seen {
                if e.dirty && e.name.is_some() {
                    calls.push((k.clone(), false));
                }
            }
        }
        for (key, _) in calls {
            let Some(entry) = seen.get_mut(&key) else {
                continue;
            };
            let Some(name) = entry.name.clone() else {
                continue;
            };
            tokio::time::sleep_until(next_call).await;
            next_call = tokio::time::Instant::now() + spacing;
            let api: Api<Event> = Api::namespaced(client.clone(), &key.namespace);
            let series = EventSeries {
                count: entry.count,
                last_observed_time: micro_now(),
            };
            let patch = serde_json::json!({ "series": series });
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => metrics.event(key.reason.as_str(), "sent"),
                Err(e) => {
                    tracing::debug!(error = %e, event = %name, "cannot update Event series");
                    metrics.event(key.reason.as_str(), "dropped");
                }
            }
            entry.dirty = false;
            entry.last_patch = tokio::time::Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(n: usize) -> EventRequest {
        EventRequest {
            namespace: "shop".into(),
            regarding: ObjectReference {
                kind: Some("ReplicaSet".into()),
                name: Some(format!("rs-{n}")),
                ..Default::default()
            },
            reason: EventReason::InjectionSkipped,
            note: "x".into(),
        }
    }

    /// With nobody draining the queue, offers beyond its size are dropped
    /// and counted, and offering never waits.
    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let metrics = Arc::new(Metrics::new());
        let (tx, _rx) = mpsc::channel(2);
        let events = Events {
            tx,
            metrics: metrics.clone(),
        };
        let start = std::time::Instant::now();
        for n in 0..10 {
            events.offer(request(n));
        }
        assert!(start.elapsed() < Duration::from_millis(50));
        assert!(
            metrics.encode().contains(
                r#"otel_admission_events_total{reason="InjectionSkipped",result="dropped"} 8"#
            ),
            "{}",
            metrics.encode()
        );
    }

    #[test]
    fn notes_are_one_line_and_bounded() {
        let long = format!("a\nb{}", "é".repeat(2000));
        let n = clamp_note(&long);
        assert!(!n.contains('\n') && n.len() <= MAX_NOTE);
    }
}
