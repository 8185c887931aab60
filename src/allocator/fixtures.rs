//! Builders for pools and Service requests, so each test reads as one line per object.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::config::{AddrRange, Family, Pool, PoolAllocation, Selector};
use crate::service::{Protocol, Request};

pub fn pool(name: &str, entries: &[&str]) -> Pool {
    Pool {
        name: name.into(),
        labels: BTreeMap::new(),
        ranges: entries.iter().map(|e| AddrRange::parse(e).expect("fixture entry")).collect(),
        auto_assign: true,
        avoid_buggy_ips: false,
        allocation: None,
    }
}

impl Pool {
    pub fn manual(mut self) -> Pool {
        self.auto_assign = false;
        self
    }
    pub fn avoid_buggy(mut self) -> Pool {
        self.avoid_buggy_ips = true;
        self
    }
    fn alloc_mut(&mut self) -> &mut PoolAllocation {
        self.allocation.get_or_insert(PoolAllocation {
            priority: 0,
            namespaces: BTreeSet::new(),
            restricts_namespaces: false,
            service_selectors: Vec::new(),
        })
    }
    pub fn priority(mut self, p: i32) -> Pool {
        self.alloc_mut().priority = p;
        self
    }
    pub fn for_namespace(mut self, ns: &str) -> Pool {
        let a = self.alloc_mut();
        a.namespaces.insert(ns.into());
        a.restricts_namespaces = true;
        self
    }
    pub fn for_label(mut self, k: &str, v: &str) -> Pool {
        let sel = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some([(k.to_string(), v.to_string())].into()),
            ..Default::default()
        };
        self.alloc_mut().service_selectors.push(Selector::parse(&sel).expect("fixture selector"));
        self
    }
}

pub fn pools(list: Vec<Pool>) -> BTreeMap<String, Pool> {
    list.into_iter().map(|p| (p.name.clone(), p)).collect()
}

pub fn svc(key: &str) -> Request {
    let (ns, _) = key.split_once('/').expect("ns/name");
    Request {
        key: key.into(),
        namespace: ns.into(),
        labels: BTreeMap::new(),
        families: vec![Family::V4],
        prefer_dual_stack: false,
        requested_ips: Vec::new(),
        pool: None,
        sharing_key: None,
        backend_key: String::new(),
        local_traffic: false,
        ports: [(Protocol::Tcp, 80)].into(),
        current_ips: Vec::new(),
        created: None,
        legacy_annotations: Vec::new(),
    }
}

pub fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().expect("fixture IP")).collect()
}

impl Request {
    pub fn v6(mut self) -> Request {
        self.families = vec![Family::V6];
        self
    }
    pub fn require_dual(mut self) -> Request {
        self.families = vec![Family::V4, Family::V6];
        self
    }
    pub fn prefer_dual(mut self) -> Request {
        self.families = vec![Family::V4, Family::V6];
        self.prefer_dual_stack = true;
        self
    }
    pub fn v6_first(mut self) -> Request {
        self.families.reverse();
        self
    }
    pub fn wants(mut self, list: &[&str]) -> Request {
        self.requested_ips = ips(list);
        self
    }
    pub fn from_pool(mut self, p: &str) -> Request {
        self.pool = Some(p.into());
        self
    }
    pub fn share(mut self, key: &str) -> Request {
        self.sharing_key = Some(key.into());
        self
    }
    pub fn local(mut self, selector: &str) -> Request {
        self.backend_key = selector.into();
        self
    }
    pub fn ports(mut self, list: &[(Protocol, u16)]) -> Request {
        self.ports = list.iter().copied().collect();
        self
    }
    pub fn holding(mut self, list: &[&str]) -> Request {
        self.current_ips = ips(list);
        self
    }
    pub fn label(mut self, k: &str, v: &str) -> Request {
        self.labels.insert(k.into(), v.into());
        self
    }
}
