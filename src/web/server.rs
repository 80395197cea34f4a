//! Accepting and serving connections, hardened against slow, idle, hostile and too many clients:
//! a cap on open connections (more wait in the listen backlog), a TLS handshake timeout, a
//! header-read timeout, an idle timeout, small request heads, and a backoff on accept errors.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::routes::{self, HttpState};
use super::Web;
use crate::scheduler::SHUTDOWN_GRACE;

/// Limits on what one client may take from the server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections, over all listeners; more wait in the kernel's listen backlog.
    pub max_connections: usize,
    /// Time to finish a TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Time from waiting for a request to having its whole head (request line and headers).
    pub header_read_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed (idle keep-alive,
    /// a client that stops reading its response).
    pub idle_timeout: Duration,
    /// Bytes of request head buffered; a longer head gets 431 and the connection is closed.
    pub max_head_bytes: usize,
    /// Headers per request; more get 431.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_head_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// Time of the last byte moved, in milliseconds since `start`.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that records when it last moved a byte.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves HTTP/1.1 on `io` until the client leaves, a limit closes it, or shutdown.
async fn serve_io<S>(
    io: S,
    web: Arc<Web>,
    state: HttpState,
    activity: Arc<Activity>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &web.limits;
    let idle_timeout = limits.idle_timeout;
    let service = {
        let web = web.clone();
        service_fn(move |req: Request<Incoming>| {
            let (web, state) = (web.clone(), state.clone());
            async move { Ok::<_, Infallible>(routes::respond(&web, &state, req).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper refuses (panics on) buffers under 8 KiB.
        .max_buf_size(limits.max_head_bytes.max(8192))
        .max_headers(limits.max_headers)
        .serve_connection(
            TokioIo::new(Tracked {
                inner: io,
                activity: activity.clone(),
            }),
            service,
        );
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_deadline = activity.last() + idle_timeout;
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                if activity.last() + idle_timeout <= Instant::now() {
                    tracing::debug!("closing an idle connection");
                    return;
                }
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

async fn handle_connection(
    stream: TcpStream,
    web: Arc<Web>,
    state: HttpState,
    shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Arc::new(Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    });
    // The web config as of this connection's start decides TLS; a new certificate applies to
    // new connections.
    let Some(tls) = web.config.current().tls.clone() else {
        serve_io(stream, web, state, activity, shutdown).await;
        return;
    };
    let handshake = TlsAcceptor::from(tls).accept(stream);
    match tokio::time::timeout(web.limits.tls_handshake_timeout, handshake).await {
        Ok(Ok(tls_stream)) => serve_io(tls_stream, web, state, activity, shutdown).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!("TLS handshake timed out"),
    }
}

/// Connections the kernel queues before `accept`: those over `--web.max-connections` wait here.
/// (Bound without one, listeners here got 128, and a burst of 300 connections saw SYNs dropped
/// and retried after 1 s.)
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds `address` (`host:port`) with [`LISTEN_BACKLOG`].
pub async fn bind(address: &str) -> std::io::Result<TcpListener> {
    let mut last_error = None;
    for addr in tokio::net::lookup_host(address).await? {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|_| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{address}: no address"),
        )
    }))
}

/// The wait after the `n`th accept error in a row: 5 ms doubling up to 1 s (as Go's net/http).
fn accept_backoff(n: u32) -> Duration {
    Duration::from_millis(5u64.saturating_mul(1 << n.min(8))).min(Duration::from_secs(1))
}

async fn accept_loop(
    listener: TcpListener,
    web: Arc<Web>,
    state: HttpState,
    slots: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut errors_in_a_row = 0u32;
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = shutdown.changed() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                errors_in_a_row = 0;
                let (web, state, shutdown) = (web.clone(), state.clone(), shutdown.clone());
                tokio::spawn(async move {
                    handle_connection(stream, web, state, shutdown).await;
                    drop(permit);
                });
            }
            Err(e) => {
                let wait = accept_backoff(errors_in_a_row);
                errors_in_a_row = errors_in_a_row.saturating_add(1);
                tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "accepting a connection failed");
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

/// Serves on every listener until `shutdown` turns true, then lets open connections finish
/// (bounded by the shutdown grace).
pub async fn serve(
    listeners: Vec<TcpListener>,
    web: Arc<Web>,
    state: HttpState,
    shutdown: watch::Receiver<bool>,
) {
    let max = web.limits.max_connections.clamp(1, 1 << 20);
    let slots = Arc::new(Semaphore::new(max));
    let loops: Vec<_> = listeners
        .into_iter()
        .map(|l| {
            tokio::spawn(accept_loop(
                l,
                web.clone(),
                state.clone(),
                slots.clone(),
                shutdown.clone(),
            ))
        })
        .collect();
    for l in loops {
        let _ = l.await;
    }
    // Every connection holds a slot until it ends.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections were still open at shutdown");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_backoff_doubles_up_to_a_second() {
        assert_eq!(accept_backoff(0), Duration::from_millis(5));
        assert_eq!(accept_backoff(1), Duration::from_millis(10));
        assert_eq!(accept_backoff(7), Duration::from_millis(640));
        assert_eq!(accept_backoff(8), Duration::from_secs(1));
        assert_eq!(accept_backoff(u32::MAX), Duration::from_secs(1));
    }
}
