//! The HTTP serving layer: flags and web config (TLS, basic auth, headers) as Prometheus'
//! exporter-toolkit defines them, hardened connection handling, and the routes.

pub mod auth;
mod body;
pub mod config;
mod files;
pub mod routes;
pub mod server;
pub mod status_page;
mod tls;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

pub use body::Chunks;
pub use config::{WebConfig, WebConfigHandle};
pub use files::WebConfigError;
pub use routes::HttpState;
pub use server::{bind, serve, Limits};

/// Where a reload's outcome goes: `Err` carries the validation message.
pub type ReloadReply = oneshot::Sender<Result<(), String>>;

/// The lifecycle endpoints' effects (`--web.enable-lifecycle`).
#[derive(Debug)]
pub struct Lifecycle {
    /// `POST /-/reload` sends here and answers with the reply.
    pub reload: mpsc::Sender<ReloadReply>,
    /// `POST /-/quit` turns this true (the shutdown signal).
    pub quit: Arc<watch::Sender<bool>>,
}

/// Everything the server needs besides the metrics.
#[derive(Debug)]
pub struct Web {
    /// Path of the metrics (`--web.telemetry-path`).
    pub telemetry_path: String,
    pub config: Arc<WebConfigHandle>,
    /// `None` unless `--web.enable-lifecycle`: the endpoints then answer 403.
    pub lifecycle: Option<Lifecycle>,
    pub limits: Limits,
}

impl Web {
    /// Plain HTTP, no authentication, /metrics, default limits.
    pub fn plain() -> Self {
        Self {
            telemetry_path: "/metrics".into(),
            config: Arc::new(WebConfigHandle::none()),
            lifecycle: None,
            limits: Limits::default(),
        }
    }
}
