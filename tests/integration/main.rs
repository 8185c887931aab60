//! One integration test binary (one link step); each module checks its own preconditions and
//! prints `skipped: <why>` when it cannot run here.

#[macro_use]
mod frr_lab;
#[macro_use]
mod kube_lab;
#[macro_use]
mod cluster_lab;
mod agent;
mod agent_process;
mod agent_service;
mod bgp_lab;
mod bgp_rules;
mod bgp_sessions;
#[macro_use]
mod chart;
mod chart_monitoring;
mod chart_ops;
mod cli;
mod cluster_client;
mod cluster_control;
mod cluster_e2e;
mod cluster_e2e_bgp;
mod cluster_e2e_bgp6;
mod cluster_e2e_install;
mod cluster_e2e_l2;
mod cluster_helm;
mod cluster_images;
mod cluster_install_paths;
mod cluster_latency;
mod cluster_migration;
mod cluster_migration_bgp;
mod cluster_node;
mod cluster_node_ready;
mod cluster_upgrade;
mod crds;
mod examples;
mod fabric;
mod first_sessions;
mod frr_golden;
mod frr_image;
mod frr_log_level;
mod frr_root;
mod frr_status;
mod graceful_restart;
mod images;
mod install;
mod ipv6_node;
mod kube_announce;
mod kube_announce_failed;
mod kube_controller;
mod kube_events;
mod kube_exclude;
mod kube_invalid;
mod kube_ipvs;
mod kube_metrics_auth;
mod kube_pools;
mod kube_probes;
mod kube_quiet;
mod kube_speaker;
mod kube_webhook;
mod l2_lab;
mod l2_lab_kube;
mod l2_lab_members;
mod l2_lab_ready;
mod l2_ndp;
mod l2_refresh;
mod l2_rules;
mod l2_wire;
mod manifest_hostile;
mod metallb_metrics;
mod prometheus_rules;
mod purity;
mod scale;
mod scrape_bench;
mod soak;
mod soak_lab;
mod speaker_extras;
mod speaker_metrics;
mod speaker_offline;
mod tls_flags;
mod webhook_hostile;
mod wire_formats;

use std::path::{Path, PathBuf};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn ferrolb_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ferrolb"))
}

/// A small runtime for a test's own async calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// A runtime with two workers, for tests whose async work runs beside blocking waits.
pub fn threaded_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}
