//! Sends the speaker's Events (`nodeAssigned`, `announceFailed`) apart from the announcing
//! loop: a slow API server delays an Event, never an announcement. What is sent is decided in
//! `assigned` and `failures`.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Reporter};
use tokio::sync::mpsc;

use super::{assigned, failures};
use crate::api::AnnounceFailure;
use crate::k8s::events::EventWriter;

/// Events waiting to be sent; more than this and the newest are dropped.
const QUEUE: usize = 256;

pub struct SpeakerEvents {
    node: String,
    tx: mpsc::Sender<(ObjectReference, Event)>,
}

impl SpeakerEvents {
    pub fn start(client: Client, node: &str) -> SpeakerEvents {
        let (tx, mut rx) = mpsc::channel::<(ObjectReference, Event)>(QUEUE);
        let reporter = Reporter { controller: "ferrolb-speaker".into(), instance: Some(node.to_string()) };
        let recorder = EventWriter::new(client, reporter);
        tokio::spawn(async move {
            while let Some((service, event)) = rx.recv().await {
                if let Err(e) = recorder.publish(&event, &service).await {
                    tracing::warn!(error = %e, reason = %event.reason, "recording an event");
                }
            }
        });
        SpeakerEvents { node: node.to_string(), tx }
    }

    /// Queues MetalLB's "announcing from node X" Event; false when the queue is full (the
    /// Event is dropped).
    pub fn assigned(&self, service: ObjectReference, protocol: &'static str) -> bool {
        self.queue(service, EventType::Normal, assigned::REASON, assigned::message(&self.node, protocol))
    }

    /// Queues a Warning that this node cannot make `failure`; false when the queue is full.
    pub fn announce_failed(&self, service: ObjectReference, failure: &AnnounceFailure) -> bool {
        self.queue(service, EventType::Warning, failures::REASON, failures::message(&self.node, failure))
    }

    /// Both kinds are about announcing a Service.
    fn queue(&self, service: ObjectReference, type_: EventType, reason: &str, note: String) -> bool {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: "Announce".into(),
            secondary: None,
        };
        self.tx.try_send((service, event)).is_ok()
    }
}
