//! A cluster for the controller's decisions to read, and a lab that answers their effects the
//! way the API server and the cache would, so each test reads as a sequence of inputs.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::Resource;

use super::effect::{About, Effect, Input, Publish};
use super::state::{Cluster, Controller, Settings};
use crate::api::{AnnounceFailure, ConfigurationState, ConfigurationStateStatus};
use crate::k8s::cache::Reports;
use crate::plan::incremental::Dirty;
use crate::plan::writeback::{Change, POOL_ANNOTATION, key};
use crate::plan::{Inputs, Options};
use crate::service::ServiceKey;

pub fn pool(name: &str, addresses: &[&str]) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: metallb-system}}\n\
         spec: {{addresses: [{}]}}\n",
        addresses.join(", ")
    )
}

/// A LoadBalancer Service in namespace `shop`.
pub fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop}}\nspec: {{type: LoadBalancer}}\n"
    )
}

/// A LoadBalancer Service in `shop` that asks for `pool`.
pub fn service_from(name: &str, pool: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: shop, annotations: {{metallb.io/address-pool: {pool}}}}}\n\
         spec: {{type: LoadBalancer}}\n"
    )
}

pub fn l2_advertisement(name: &str) -> String {
    format!(
        "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: {name}, namespace: metallb-system}}\n"
    )
}

pub fn node(name: &str) -> String {
    format!("apiVersion: v1\nkind: Node\nmetadata: {{name: {name}}}\n")
}

/// Documents as one manifest.
pub fn manifest(docs: &[String]) -> String {
    docs.join("---\n")
}

/// A speaker's ConfigurationState saying it cannot announce `service` over layer 2.
pub fn announce_failure(node: &str, service: &str, reason: &str) -> Arc<ConfigurationState> {
    Arc::new(ConfigurationState {
        metadata: kube::api::ObjectMeta { name: Some(format!("speaker-{node}")), ..Default::default() },
        spec: Default::default(),
        status: Some(ConfigurationStateStatus {
            announce_failures: vec![AnnounceFailure {
                service: service.into(),
                protocol: "layer2".into(),
                reason: reason.into(),
            }],
            ..Default::default()
        }),
    })
}

/// The cluster as the cache would hold it.
pub struct World {
    pub inputs: Inputs,
    pub speakers: Vec<Arc<ConfigurationState>>,
    /// What each pass asked the speakers' reports about, in order: None for every Service.
    pub reports_asked: Mutex<Vec<Option<BTreeSet<ServiceKey>>>>,
}

impl Default for World {
    fn default() -> World {
        World { inputs: Inputs::new("metallb-system"), speakers: Vec::new(), reports_asked: Mutex::default() }
    }
}

impl Cluster for World {
    fn inputs(&self) -> Inputs {
        self.inputs.clone()
    }

    fn inputs_for(&self, services: &BTreeSet<ServiceKey>) -> Inputs {
        let mut i = self.inputs.clone();
        i.services.retain(|s| services.contains(&key(s)));
        i
    }

    fn reports(&self, services: Option<&BTreeSet<ServiceKey>>) -> Reports {
        if let Ok(mut asked) = self.reports_asked.lock() {
            asked.push(services.cloned());
        }
        (Vec::new(), Vec::new())
    }

    fn speaker_states(&self) -> Vec<Arc<ConfigurationState>> {
        self.speakers.clone()
    }
}

impl World {
    /// Creates or replaces the objects of `yaml`; what the cache would mark as changed.
    pub fn apply(&mut self, yaml: &str) -> Dirty {
        let mut new = Inputs::new("metallb-system");
        new.add_yaml("test", yaml).expect("fixture manifest");
        let mut dirty = Dirty::default();
        for svc in new.services {
            dirty.services.insert(key(&svc));
            self.inputs.services.retain(|s| key(s) != key(&svc));
            self.inputs.services.push(svc);
        }
        let (o, n) = (&mut self.inputs.objects, new.objects);
        dirty.everything = !(n.pools.is_empty() && n.l2_advertisements.is_empty() && n.nodes.is_empty());
        upsert(&mut o.pools, n.pools);
        upsert(&mut o.l2_advertisements, n.l2_advertisements);
        upsert(&mut o.nodes, n.nodes);
        dirty
    }

    /// What the passes since the last call asked the reports about.
    pub fn take_reports_asked(&mut self) -> Vec<Option<BTreeSet<ServiceKey>>> {
        self.reports_asked.get_mut().map(std::mem::take).unwrap_or_default()
    }

    pub fn delete_service(&mut self, key_: &str) -> Dirty {
        self.inputs.services.retain(|s| key(s) != key_);
        Dirty { everything: false, services: [key_.to_string()].into() }
    }

    /// Changes the Service `key_` as a write would.
    fn edit(&mut self, key_: &str, edit: impl FnOnce(&mut Service)) {
        if let Some(s) = self.inputs.services.iter_mut().find(|s| key(s) == key_) {
            edit(Arc::make_mut(s));
        }
    }
}

fn upsert<K: Resource>(list: &mut Vec<K>, new: Vec<K>) {
    for o in new {
        list.retain(|x| x.meta().name != o.meta().name);
        list.push(o);
    }
}

/// A controller over a [`World`], with a clock of its own and the API server's answers.
pub struct Lab {
    pub ctl: Controller<World>,
    pub now: Instant,
    /// Services whose writes fail until taken out.
    pub failing: BTreeSet<ServiceKey>,
    /// Reports are left unanswered: the test says [`Input::Reported`] when it wants.
    pub hold_reports: bool,
    /// Services the last answers changed: the cache would say so next.
    touched: BTreeSet<ServiceKey>,
}

impl Lab {
    /// A controller that leads and has listed `yaml`; every effect until it waits for a change.
    pub fn start(yaml: &str) -> (Lab, Vec<Effect>) {
        Lab::start_with(yaml, Duration::ZERO)
    }

    pub fn start_with(yaml: &str, settle: Duration) -> (Lab, Vec<Effect>) {
        let mut world = World::default();
        world.apply(yaml);
        let mut lab = Lab::standby(world, settle);
        let mut all = lab.step(Input::Elected);
        let first = lab.step(Input::Listed);
        all.extend(lab.answer(first));
        (lab, all)
    }

    /// A controller over `world` that neither leads nor has listed it.
    pub fn standby(world: World, settle: Duration) -> Lab {
        let now = Instant::now();
        let settings = Settings { options: Options::default(), settle };
        let ctl = Controller::new(world, settings, now);
        Lab { ctl, now, failing: BTreeSet::new(), hold_reports: false, touched: BTreeSet::new() }
    }

    pub fn world(&mut self) -> &mut World {
        self.ctl.cluster_mut()
    }

    pub fn step(&mut self, input: Input) -> Vec<Effect> {
        self.ctl.step(input, self.now)
    }

    /// Time passes; the driver ticks if the controller asked for it by then.
    pub fn after(&mut self, d: Duration) -> Vec<Effect> {
        self.now += d;
        let due = self.ctl.deadline().is_some_and(|at| at <= self.now);
        let effects = if due { self.step(Input::Tick) } else { Vec::new() };
        self.answer(effects)
    }

    /// `yaml` applied to the cluster and the change reported; every effect that follows.
    pub fn change(&mut self, yaml: &str) -> Vec<Effect> {
        let dirty = self.world().apply(yaml);
        let effects = self.step(Input::Changed(dirty));
        self.answer(effects)
    }

    /// The cache reports what the controller's own writes changed, until nothing more is.
    pub fn settle(&mut self) -> Vec<Effect> {
        let mut all = Vec::new();
        for _ in 0..10 {
            if self.touched.is_empty() {
                return all;
            }
            let services = std::mem::take(&mut self.touched);
            let effects = self.step(Input::Changed(Dirty { everything: false, services }));
            all.extend(self.answer(effects));
        }
        panic!("still writing after ten passes: {all:#?}");
    }

    /// Performs `effects` as the API server would, answering the controller; every effect on
    /// the way (`effects` first).
    pub fn answer(&mut self, effects: Vec<Effect>) -> Vec<Effect> {
        let mut all = Vec::new();
        let mut queue: VecDeque<Effect> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let answers = self.perform(&effect);
            all.push(effect);
            for input in answers {
                queue.extend(self.step(input));
            }
        }
        all
    }

    fn perform(&mut self, effect: &Effect) -> Vec<Input> {
        match effect {
            Effect::WriteServices(batch) => {
                let mut answers: Vec<Input> = batch.iter().map(|w| self.write(&w.change)).collect();
                answers.push(Input::WritesDone);
                answers
            }
            Effect::SetCondition(service, c) => {
                let condition = k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                    type_: crate::plan::condition::TYPE.into(),
                    status: if c.want.status { "True" } else { "False" }.into(),
                    reason: c.want.reason.into(),
                    message: c.want.message.clone(),
                    last_transition_time: c.since.clone().unwrap_or(
                        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                        ),
                    ),
                    observed_generation: c.generation,
                };
                self.world()
                    .edit(service, |s| s.status.get_or_insert_default().conditions = Some(vec![condition]));
                self.touched.insert(service.clone());
                Vec::new()
            }
            Effect::Report(_) if self.hold_reports => Vec::new(),
            Effect::Report(report) => {
                let pools = &mut self.world().inputs.objects.pools;
                for (name, status) in &report.pools {
                    if let Some(p) = pools.iter_mut().find(|p| p.metadata.name.as_deref() == Some(name)) {
                        p.status = Some(status.clone());
                    }
                }
                vec![Input::Reported]
            }
            _ => Vec::new(),
        }
    }

    fn write(&mut self, change: &Change) -> Input {
        let service = match change {
            Change::Assign { service, .. } | Change::Clear { service, .. } => service.clone(),
        };
        if self.failing.contains(&service) {
            return Input::Written { change: change.clone(), error: Some("the API server said no".into()) };
        }
        let (ips, pool) = match change {
            Change::Assign { ips, pool, .. } => (ips.clone(), Some(pool.clone())),
            Change::Clear { .. } => (Vec::new(), None),
        };
        self.world().edit(&service, |s| {
            let ingress: Vec<_> = ips.iter().map(|ip| serde_json::json!({"ip": ip})).collect();
            let lb = serde_json::from_value(serde_json::json!({"ingress": ingress})).ok();
            s.status.get_or_insert_default().load_balancer = lb;
            let annotations = s.metadata.annotations.get_or_insert_default();
            match pool {
                Some(p) => annotations.insert(POOL_ANNOTATION.into(), p),
                None => annotations.remove(POOL_ANNOTATION),
            };
        });
        self.touched.insert(service);
        Input::Written { change: change.clone(), error: None }
    }
}

/// The Events among `effects`: (reason, what about).
pub fn events(effects: &[Effect]) -> Vec<(&'static str, String)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Publish(Publish { reason, about, .. }) => Some((*reason, name_of(about))),
            _ => None,
        })
        .collect()
}

/// The Service writes asked for among `effects`.
pub fn writes(effects: &[Effect]) -> Vec<Change> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::WriteServices(batch) => Some(batch.iter().map(|w| w.change.clone())),
            _ => None,
        })
        .flatten()
        .collect()
}

/// The reports among `effects`.
pub fn reports(effects: &[Effect]) -> Vec<&super::effect::Report> {
    effects.iter().filter_map(|e| if let Effect::Report(r) = e { Some(r) } else { None }).collect()
}

/// The conditions queued among `effects`: (Service, reason).
pub fn conditions(effects: &[Effect]) -> Vec<(String, &'static str)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::SetCondition(s, c) => Some((s.clone(), c.want.reason)),
            _ => None,
        })
        .collect()
}

/// `namespace/name` of a Service, the name of anything else.
fn name_of(about: &About) -> String {
    match about {
        About::Service(s) => key(s),
        About::Object(o) => o.name.clone().unwrap_or_default(),
    }
}
