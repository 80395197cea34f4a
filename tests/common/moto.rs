//! moto_server, a third-party AWS emulator, on a free loopback port.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use super::{free_port, wait_until, KillOnDrop};

/// moto_server (a third-party AWS emulator) on a free loopback port; killed on drop.
pub struct Moto {
    _child: KillOnDrop,
    pub addr: SocketAddr,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Self {
        let port = free_port();
        let bin = std::env::var("MOTO_SERVER")
            .unwrap_or_else(|_| format!("{}/.venv/bin/moto_server", env!("CARGO_MANIFEST_DIR")));
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin} ({e}); run scripts/setup-tools.sh or set MOTO_SERVER")
            });
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        wait_until("moto answers", async || {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
        Self {
            _child: KillOnDrop(child),
            addr,
            endpoint: format!("http://{addr}"),
        }
    }

    /// An SDK configuration for moto with the credentials of `access_key` (moto serves the
    /// account those credentials belong to).
    pub async fn sdk_config(
        &self,
        access_key: &str,
        secret: &str,
        token: Option<String>,
    ) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_sfn::config::Credentials::new(
                access_key, secret, token, None, "test",
            ))
            .load()
            .await
    }
}
