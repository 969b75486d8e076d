//! A library server running on 127.0.0.1:0 in the test's runtime, stopped on demand:
//! the start-up and shutdown the end-to-end tests of `Server::run` share.

#![allow(dead_code)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use noise_echo::server::{Server, ServerConfig, ServerStats};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a stopping server may take: far beyond what a loopback one needs.
const STOP_LIMIT: Duration = Duration::from_secs(20);

/// `Server::run` on a loopback listener, with its counters.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its counters, to wait on.
    pub stats: Arc<ServerStats>,
    /// Sending (or dropping) it is the shutdown signal.
    stop: Option<oneshot::Sender<()>>,
    /// The server's task, which ends once it has stopped.
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Starts a server with `config` on 127.0.0.1:0.
    ///
    /// # Panics
    /// If the settings are invalid or nothing can be bound.
    pub async fn start(config: ServerConfig) -> Self {
        let server = Server::new(config).unwrap();
        let stats = server.stats();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stats,
            stop: Some(stop),
            task,
        }
    }

    /// Stops the server and waits (bounded) until it has.
    ///
    /// # Panics
    /// If it does not stop in time, or stops with an error.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(STOP_LIMIT, self.task)
            .await
            .expect("the server stopped in time")
            .unwrap()
            .unwrap();
    }
}
