//! The writes that follow an IP, below it in priority: Events and the `Announced` condition.
//!
//! A cold start of 10,000 Services decides 10,000 IPs, then has 10,000 Events and 10,000
//! conditions to write. Written in the decision loop or beside the IP writes, they compete with
//! the IPs for the API server (the IPs are what makes a Service reachable) and hold up the
//! next decision: the first Services created after a cold start waited seconds behind them.
//! Here they wait whenever IP writes are in flight ([`Gate`]), and go out few at a time, as
//! client-go's event broadcaster sends them from a queue of its own.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Service};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Client, Resource};
use tokio::sync::{Notify, mpsc, watch};

use super::effect::About;
use crate::k8s::cache::lock;
use crate::k8s::events::EventWriter;
use crate::metrics::METRICS;

/// Background writes in flight at once, for each kind: half the IP writers'. With a quarter,
/// a cold start's 20,000 waited half a minute and their queues were most of the controller's
/// memory; the gate, not this, keeps them out of the IPs' way.
const BACKGROUND_WRITERS: usize = super::WRITERS / 2;

/// Writes after which a queue hands what they held back (see crate::memory).
const TRIM_AFTER: usize = 1000;

/// Events waiting to be written, at most: a cold start of 10,000 Services and then some. One
/// that does not fit is dropped and counted (`ferrolb_events_dropped_total`), as client-go
/// drops what overflows its broadcaster's queue; the condition says the same thing.
const EVENT_QUEUE: usize = 25_000;

/// Counts the IP writes in flight; background writes start only while there are none.
#[derive(Clone)]
pub struct Gate(Arc<watch::Sender<usize>>);

/// One holder of the [`Gate`]; dropping it lets the background go on.
pub struct Held(Arc<watch::Sender<usize>>);

impl Gate {
    pub fn new() -> Gate {
        Gate(Arc::new(watch::channel(0).0))
    }

    /// Holds background writes back until the returned guard is dropped.
    pub fn hold(&self) -> Held {
        self.0.send_modify(|n| *n += 1);
        Held(self.0.clone())
    }

    /// Holds background writes back for good: the role is ending, and what it writes now
    /// could land after its lease went. Those already past the gate go on.
    pub fn close(&self) {
        std::mem::forget(self.hold());
    }

    /// Waits until no IP writes are in flight.
    async fn open(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// An Event waiting to be written.
pub struct Waiting {
    pub about: About,
    pub type_: EventType,
    pub reason: &'static str,
    pub note: String,
}

impl Waiting {
    fn event(self) -> (ObjectReference, Event) {
        let regarding = match self.about {
            About::Service(svc) => svc.object_ref(&()),
            About::Object(o) => o,
        };
        let event = Event {
            type_: self.type_,
            reason: self.reason.to_string(),
            note: Some(self.note),
            action: "Allocate".into(),
            secondary: None,
        };
        (regarding, event)
    }
}

/// Events go out beside the writes, not in their slots: waiting on an Event for each IP halved
/// how fast a cold start gave thousands of Services their IPs.
#[derive(Clone)]
pub struct Events {
    tx: mpsc::Sender<Waiting>,
}

impl Events {
    pub fn start(recorder: EventWriter, gate: Gate) -> Events {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        tokio::spawn(async move {
            let since_trim = Arc::new(AtomicUsize::new(0));
            tokio_stream::wrappers::ReceiverStream::new(rx)
                .for_each_concurrent(BACKGROUND_WRITERS, |waiting: Waiting| {
                    let (recorder, gate, since_trim) = (recorder.clone(), gate.clone(), since_trim.clone());
                    async move {
                        gate.open().await;
                        let (object, event) = waiting.event();
                        if let Err(e) = recorder.publish(&event, &object).await {
                            tracing::warn!(error = %e, "recording an event");
                        }
                        drop((object, event));
                        // As with conditions: what a backlog's written part held is free, not
                        // returned, until the next trim.
                        if since_trim.fetch_add(1, Ordering::Relaxed) + 1 >= TRIM_AFTER {
                            since_trim.store(0, Ordering::Relaxed);
                            crate::memory::give_back();
                        }
                    }
                })
                .await;
        });
        Events { tx }
    }

    pub fn send(&self, waiting: Waiting) {
        if self.tx.try_send(waiting).is_err() {
            METRICS.events_dropped.inc();
        }
    }
}

/// A condition waiting: the Service's namespace and name, and its patch as a compact value
/// (a JSON tree per Service was ~1 KB; 10,000 of them wait after a cold start).
pub struct Pending {
    pub ns: String,
    pub name: String,
    pub want: crate::plan::condition::Announced,
    pub since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    pub generation: Option<i64>,
}

impl Pending {
    fn patch(&self) -> serde_json::Value {
        serde_json::json!({"status": {"conditions": [{
            "type": crate::plan::condition::TYPE,
            "status": if self.want.status { "True" } else { "False" },
            "reason": self.want.reason,
            "message": self.want.message,
            "lastTransitionTime": self.since,
            "observedGeneration": self.generation,
        }]}})
    }
}

/// The newest condition each Service should get; one replaced before it went out is never
/// written, so a burst of changes to one Service costs one write.
#[derive(Clone)]
pub struct Conditions {
    pending: Arc<Mutex<BTreeMap<String, Pending>>>,
    wake: Arc<Notify>,
}

impl Conditions {
    pub fn start(client: Client, gate: Gate) -> Conditions {
        let queue = Conditions { pending: Arc::default(), wake: Arc::new(Notify::new()) };
        let q = queue.clone();
        tokio::spawn(async move {
            let mut written = 0;
            loop {
                let batch: Vec<(String, Pending)> = {
                    let mut p = lock(&q.pending);
                    std::iter::from_fn(|| p.pop_first()).take(BACKGROUND_WRITERS).collect()
                };
                if batch.is_empty() {
                    q.wake.notified().await;
                    continue;
                }
                // What the written part of a backlog held is free, not yet returned: trimmed
                // as it drains, so a cold start's 10,000 are not all resident until the last.
                written += batch.len();
                if written >= TRIM_AFTER {
                    crate::memory::give_back();
                    written = 0;
                }
                gate.open().await;
                futures::future::join_all(batch.into_iter().map(|(key, pending)| {
                    let api = Api::<Service>::namespaced(client.clone(), &pending.ns);
                    let (name, patch) = (pending.name.clone(), pending.patch());
                    drop(pending);
                    async move {
                        // Strategic merge: Service conditions merge by type, so other writers'
                        // conditions stay.
                        if let Err(e) =
                            api.patch_status(&name, &PatchParams::default(), &Patch::Strategic(patch)).await
                        {
                            tracing::warn!(service = %key, error = %e, "writing the Announced condition; retried on the next change");
                        }
                    }
                }))
                .await;
            }
        });
        queue
    }

    /// Has `key` get `pending`, replacing whatever was waiting for it.
    pub fn set(&self, key: String, pending: Pending) {
        lock(&self.pending).insert(key, pending);
        self.wake.notify_one();
    }

    /// `key` holds what it should already: what was waiting for it would undo that.
    pub fn cancel(&self, key: &str) {
        lock(&self.pending).remove(key);
    }
}
