//! frr-agent's gRPC service run in-process beside one lab FRR, on a unix socket in that
//! instance's directory; stopped (socket removed) when dropped.

use std::path::PathBuf;
use std::time::Duration;

use frr_sidecar::apply::Vtysh;
use frr_sidecar::proto::frr_agent_client::FrrAgentClient;
use frr_sidecar::service::{Agent, Settings};
use tokio::sync::oneshot;
use tonic::transport::Channel;

use crate::frr_lab::Frr;

pub struct AgentProcess {
    pub socket: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AgentProcess {
    pub fn start(frr: &Frr, name: &str) -> AgentProcess {
        AgentProcess::start_with(frr, name, frr.agent_vtysh(), Duration::from_millis(100))
    }

    /// With another vtysh (a wrapper counting calls, say) and poll period.
    pub fn start_with(frr: &Frr, name: &str, vtysh: Vtysh, poll: Duration) -> AgentProcess {
        let socket = frr.dir().join(format!("{name}.sock"));
        let state = frr.dir().join(format!("{name}-state"));
        std::fs::create_dir_all(&state).unwrap();
        let agent = Agent::new(Settings {
            vtysh,
            run_dir: frr.dir().join("run"),
            config_dir: None,
            state_dir: state,
            poll,
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let path = socket.clone();
        let thread = std::thread::spawn(move || {
            let rt = crate::threaded_runtime();
            rt.block_on(async move {
                let monitor = tokio::spawn(agent.clone().monitor());
                frr_sidecar::server::serve(agent, &path, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
                monitor.abort();
            });
        });
        let wait = crate::frr_lab::wait_for(Duration::from_secs(5), || socket.exists());
        assert!(wait.is_some(), "agent socket {} never appeared", socket.display());
        AgentProcess { socket, stop: Some(stop), thread: Some(thread) }
    }

    pub fn client(&self) -> FrrAgentClient<Channel> {
        frr_sidecar::server::client(&self.socket)
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}
