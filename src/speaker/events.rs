//! Sends the speaker's `nodeAssigned` Events apart from the announcing loop: a slow API
//! server delays an Event, never an announcement. What is sent is decided in `assigned`.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Reporter};
use tokio::sync::mpsc;

use super::assigned;
use crate::k8s::events::EventWriter;

/// Events waiting to be sent; more than this and the newest are dropped.
const QUEUE: usize = 256;

pub struct NodeAssigned {
    tx: mpsc::Sender<(ObjectReference, &'static str)>,
}

impl NodeAssigned {
    pub fn start(client: Client, node: &str) -> NodeAssigned {
        let (tx, mut rx) = mpsc::channel::<(ObjectReference, &'static str)>(QUEUE);
        let reporter = Reporter { controller: "ferrolb-speaker".into(), instance: Some(node.to_string()) };
        let recorder = EventWriter::new(client, reporter);
        let node = node.to_string();
        tokio::spawn(async move {
            while let Some((service, protocol)) = rx.recv().await {
                let event = Event {
                    type_: EventType::Normal,
                    reason: assigned::REASON.into(),
                    note: Some(assigned::message(&node, protocol)),
                    action: "Announce".into(),
                    secondary: None,
                };
                if let Err(e) = recorder.publish(&event, &service).await {
                    tracing::warn!(error = %e, "recording a nodeAssigned event");
                }
            }
        });
        NodeAssigned { tx }
    }

    /// Queues the Event; false when the queue is full (the Event is dropped).
    pub fn send(&self, service: ObjectReference, protocol: &'static str) -> bool {
        self.tx.try_send((service, protocol)).is_ok()
    }
}
