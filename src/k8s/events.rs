//! Events written straight to the API server (events.k8s.io/v1), each as a new Event.
//!
//! kube's `Recorder` keeps every Event it published for six minutes, to count a repeat as a
//! series, and walks that whole cache on each publish. A cold start of 10,000 Services
//! publishes 10,000 Events: all of them held in the controller at once, and ~10^8 steps of
//! that walk. ferrolb publishes an Event only when something changed (once per reason, the
//! speaker's rate-limited per Service), so repeats are rare and need no memory of the past.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::{Api, Client};

#[derive(Clone)]
pub struct EventWriter {
    client: Client,
    reporter: Reporter,
}

impl EventWriter {
    pub fn new(client: Client, reporter: Reporter) -> EventWriter {
        EventWriter { client, reporter }
    }

    /// Creates one Event about `regarding`, in its namespace.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let event = self.event(ev, regarding, Timestamp::now());
        let ns = regarding.namespace.as_deref().unwrap_or("default");
        Api::<K8sEvent>::namespaced(self.client.clone(), ns).create(&PostParams::default(), &event).await?;
        Ok(())
    }

    fn event(&self, ev: &Event, regarding: &ObjectReference, now: Timestamp) -> K8sEvent {
        let controller = &self.reporter.controller;
        K8sEvent {
            // The object's name and the time in hex, as client-go names Events: unique enough
            // for one writer, and `kubectl get events` sorts them by object.
            metadata: ObjectMeta {
                name: Some(format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(controller),
                    now.as_nanosecond()
                )),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            type_: Some(match ev.type_ {
                EventType::Normal => "Normal".into(),
                EventType::Warning => "Warning".into(),
            }),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(controller.clone()),
            reporting_instance: Some(self.reporter.instance.clone().unwrap_or_else(|| controller.clone())),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_says_who_reported_what_about_which_object() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A client that is never used: building the Event needs no API server.
        let client = rt.block_on(async {
            let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
            Client::try_from(config).unwrap()
        });
        let reporter = Reporter { controller: "ferrolb-speaker".into(), instance: Some("node1".into()) };
        let writer = EventWriter::new(client, reporter);
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            name: Some("web".into()),
            namespace: Some("shop".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let ev = Event {
            type_: EventType::Warning,
            reason: "AllocationFailed".into(),
            note: Some("no pool".into()),
            action: "Allocate".into(),
            secondary: None,
        };
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let e = writer.event(&ev, &regarding, now);
        assert_eq!(e.metadata.name.as_deref(), Some(format!("web.{:x}", now.as_nanosecond()).as_str()));
        assert_eq!(e.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(
            (e.type_.as_deref(), e.reason.as_deref(), e.note.as_deref()),
            (Some("Warning"), Some("AllocationFailed"), Some("no pool"))
        );
        assert_eq!(e.action.as_deref(), Some("Allocate"));
        assert_eq!(e.regarding.as_ref(), Some(&regarding));
        assert_eq!(
            (e.reporting_controller.as_deref(), e.reporting_instance.as_deref()),
            (Some("ferrolb-speaker"), Some("node1"))
        );
        assert!(e.series.is_none() && e.deprecated_count.is_none());
    }
}
