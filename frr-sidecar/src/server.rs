//! The gRPC face of the agent, on a unix socket, and the client the speaker and CLI use.

use std::path::{Path, PathBuf};
use std::pin::Pin;

use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};
use tokio_stream::wrappers::{UnixListenerStream, WatchStream};
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Request, Response, Status};

use crate::proto::frr_agent_client::FrrAgentClient;
use crate::proto::frr_agent_server::{FrrAgent, FrrAgentServer};
use crate::proto::{AgentStatus, ApplyReply, ApplyRequest, StatusRequest};
use crate::service::Agent;

#[tonic::async_trait]
impl FrrAgent for Agent {
    async fn apply(&self, request: Request<ApplyRequest>) -> Result<Response<ApplyReply>, Status> {
        let ApplyRequest { config, generation } = request.into_inner();
        Ok(Response::new(Agent::apply(self, config, generation).await))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<AgentStatus>, Status> {
        Ok(Response::new(Agent::status(self)))
    }

    type WatchStatusStream = Pin<Box<dyn Stream<Item = Result<AgentStatus, Status>> + Send>>;

    async fn watch_status(
        &self,
        _: Request<StatusRequest>,
    ) -> Result<Response<Self::WatchStatusStream>, Status> {
        Ok(Response::new(Box::pin(WatchStream::new(self.watch()).map(Ok))))
    }
}

/// Serves `agent` on `socket` until `shutdown` completes. The socket is made owner-only: whoever
/// can write to it can reconfigure the router.
pub async fn serve(
    agent: Agent,
    socket: &Path,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // A socket left by a previous run would make bind fail.
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
        _ => {}
    }
    let listener = UnixListener::bind(socket)?;
    std::fs::set_permissions(socket, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    let server = tonic::transport::Server::builder()
        .add_service(FrrAgentServer::new(agent))
        .serve_with_incoming(UnixListenerStream::new(listener));
    // Not a graceful shutdown: WatchStatus streams never end by themselves, and a caller that
    // loses its stream reconnects.
    tokio::select! {
        r = server => r?,
        _ = shutdown => {}
    }
    Ok(())
}

/// A client for the agent listening on `socket`. Connects lazily, so it can be created before the
/// agent is up; calls fail with `Unavailable` until it is.
pub fn client(socket: impl Into<PathBuf>) -> FrrAgentClient<Channel> {
    let socket = socket.into();
    // The URI is required by the API and never used: the connector ignores it.
    let channel = Endpoint::from_static("http://frr-agent.invalid").connect_with_connector_lazy(
        tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move { UnixStream::connect(socket).await.map(TokioIo::new) }
        }),
    );
    FrrAgentClient::new(channel)
}
