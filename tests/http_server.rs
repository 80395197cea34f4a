//! The HTTP server under abuse (slow, idle, oversized, garbage and many clients; loopback only,
//! bounded loops) and its protocol details: lifecycle endpoints, 405 with `Allow`, Accept-Encoding
//! q-values, the telemetry path.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_workflow_exporter::web::{Lifecycle, Limits, Web};
use common::{http_get, http_request, parse_response, Harness, HttpResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

const SOURCES: &[&str] = &["sfn_map_runs"];

/// The tests here measure latency: they take turns rather than compete for the CPU.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// An exporter serving with `web`, polled once. Hold the guard for the whole test.
async fn started(web: Web) -> (tokio::sync::MutexGuard<'static, ()>, Harness) {
    let turn = TURN.lock().await;
    let mut h = Harness::start_with_web(SOURCES, |_| {}, web).await;
    h.poll().await;
    (turn, h)
}

/// One timed GET /metrics that must answer 200.
async fn timed_scrape(addr: SocketAddr) -> Duration {
    let t = Instant::now();
    assert_eq!(http_get(addr, "/metrics", &[]).await.status, 200);
    t.elapsed()
}

/// Reads until the peer closes (EOF or reset) and returns what was read, within `limit`.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return raw,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_closed_while_metrics_stay_fast() {
    let (_turn, h) = started(Web::plain()).await;
    let addr = h.http_addr;
    let closed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut clients = Vec::new();
    for i in 0..300 {
        let closed = closed.clone();
        clients.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                .await
                .unwrap();
            let mut buf = [0u8; 1024];
            let mut trickle = tokio::time::interval(Duration::from_millis(500));
            // Half go silent; half trickle one header byte every 500 ms (slowloris). Bounded by
            // the caller's deadline.
            loop {
                tokio::select! {
                    r = s.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { break },
                    _ = trickle.tick(), if i % 2 == 1 => {
                        if s.write_all(b"x").await.is_err() { break }
                    }
                }
            }
            closed.fetch_add(1, Ordering::SeqCst);
            start.elapsed()
        }));
    }
    let mut worst_scrape = Duration::ZERO;
    let mut worst_at = Duration::ZERO;
    let mut scrapes = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while closed.load(Ordering::SeqCst) < clients.len() && start.elapsed() < Duration::from_secs(20)
    {
        tick.tick().await;
        let took = timed_scrape(addr).await;
        if took > worst_scrape {
            (worst_scrape, worst_at) = (took, start.elapsed());
        }
        scrapes += 1;
    }
    let mut last_closed = Duration::ZERO;
    for c in clients {
        let at = tokio::time::timeout(Duration::from_secs(1), c)
            .await
            .expect("every slow client was closed")
            .unwrap();
        last_closed = last_closed.max(at);
    }
    eprintln!(
        "300 slow clients: last closed by the server after {:.2} s; {scrapes} scrapes meanwhile, slowest {:.1} ms (at {:.1} s)",
        last_closed.as_secs_f64(),
        worst_scrape.as_secs_f64() * 1e3,
        worst_at.as_secs_f64()
    );
    assert!(last_closed < Duration::from_secs(15), "{last_closed:?}");
    assert!(worst_scrape < Duration::from_secs(1), "{worst_scrape:?}");
    assert!(scrapes >= 10);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let limits = Limits {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let (_turn, h) = started(Web {
        limits,
        ..Web::plain()
    })
    .await;
    let mut s = TcpStream::connect(h.http_addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let raw = read_until_closed(&mut s, Duration::from_secs(10))
        .await
        .expect("the server closes the idle connection");
    let idle_for = t.elapsed();
    eprintln!(
        "idle keep-alive connection closed after {:.2} s (idle timeout 2 s)",
        idle_for.as_secs_f64()
    );
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "the request was answered first"
    );
    assert!(idle_for >= Duration::from_millis(1900) && idle_for < Duration::from_secs(4));
}

#[tokio::test]
async fn a_2_mb_header_is_refused() {
    let (_turn, h) = started(Web::plain()).await;
    let s = TcpStream::connect(h.http_addr).await.unwrap();
    let head = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(2 << 20)
    );
    let (mut r, mut w) = s.into_split();
    // The server may answer and close before the client has written it all.
    let writer = tokio::spawn(async move { w.write_all(head.as_bytes()).await.is_ok() });
    let t = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closes the connection");
    let wrote_all = writer.await.unwrap();
    let status = parse_response(&raw).map(|r| r.status);
    eprintln!(
        "2 MB header: status {status:?}, closed after {:.0} ms, client wrote it all: {wrote_all}",
        t.elapsed().as_secs_f64() * 1e3
    );
    assert!(matches!(status, Some(431) | None), "{status:?}");
    assert!(!wrote_all || status == Some(431));
    assert!(timed_scrape(h.http_addr).await < Duration::from_secs(1));
}

#[tokio::test]
async fn garbage_and_tls_on_the_plain_port_are_refused() {
    let (_turn, h) = started(Web::plain()).await;
    let client_hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x00, 0x02,
        0x13, 0x01, 0x01, 0x00,
    ];
    for (what, bytes) in [
        (
            "binary garbage",
            &b"\x00\x01\x02\xff\xfe garbage\r\n\r\n"[..],
        ),
        ("a bad request line", &b"HELLO?\r\n\r\n"[..]),
        ("a TLS ClientHello", client_hello),
    ] {
        let mut s = TcpStream::connect(h.http_addr).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let raw = read_until_closed(&mut s, Duration::from_secs(5))
            .await
            .unwrap_or_else(|| panic!("{what}: the server closes the connection"));
        let status = parse_response(&raw).map(|r| r.status);
        assert!(matches!(status, Some(400) | None), "{what}: {status:?}");
    }
    assert!(timed_scrape(h.http_addr).await < Duration::from_secs(1));
}

/// Reads one response off a keep-alive connection (Content-Length framed).
async fn read_response(s: &mut TcpStream, pending: &mut Vec<u8>) -> HttpResponse {
    let mut buf = [0u8; 16384];
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_response(&pending[..end + 4]).expect("a response head");
            let len: usize = head
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .expect("content-length");
            if pending.len() >= end + 4 + len {
                let rest = pending.split_off(end + 4 + len);
                let resp = parse_response(pending).expect("a response");
                *pending = rest;
                return resp;
            }
        }
        let n = s.read(&mut buf).await.expect("read");
        assert!(n > 0, "connection closed mid-response");
        pending.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_thousand_requests_over_two_hundred_connections_all_succeed() {
    let (_turn, h) = started(Web::plain()).await;
    let addr = h.http_addr;
    let t = Instant::now();
    let mut conns = Vec::new();
    for _ in 0..200 {
        conns.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut pending = Vec::new();
            let mut ok = 0;
            for _ in 0..20 {
                s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                    .await
                    .unwrap();
                if read_response(&mut s, &mut pending).await.status == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut ok = 0;
    for c in conns {
        ok += c.await.unwrap();
    }
    eprintln!(
        "4000 requests over 200 keep-alive connections: {ok} answered 200 in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(ok, 4000);
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let (_turn, h) = started(Web {
        limits,
        ..Web::plain()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(h.http_addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut pending = Vec::new();
        assert_eq!(read_response(&mut s, &mut pending).await.status, 200);
        held.push(s);
    }
    // A third connection is not served while two are open...
    let third = tokio::spawn(http_get(h.http_addr, "/healthz", &[]));
    let waited = tokio::time::timeout(Duration::from_millis(500), async {
        while !third.is_finished() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(waited.is_err(), "served beyond the connection cap");
    // ...and is as soon as one closes.
    drop(held.pop());
    let resp = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(resp.status, 200);
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    let s = TcpStream::connect(addr).await.unwrap();
    http_request(s, method, path, &[]).await.unwrap()
}

#[tokio::test]
async fn lifecycle_endpoints_need_the_flag_and_report_reload_outcomes() {
    let (turn, off) = started(Web::plain()).await;
    assert_eq!(
        request(off.http_addr, "POST", "/-/reload").await.status,
        403
    );
    assert_eq!(request(off.http_addr, "POST", "/-/quit").await.status, 403);
    drop((turn, off));

    let (reload, mut reloads) = mpsc::channel(1);
    let (quit, mut quitting) = watch::channel(false);
    let (_turn, on) = started(Web {
        lifecycle: Some(Lifecycle {
            reload,
            quit: Arc::new(quit),
        }),
        ..Web::plain()
    })
    .await;
    tokio::spawn(async move {
        let mut outcomes = [
            Ok(()),
            Err("config.yml: targets[0].regions: empty".to_owned()),
        ]
        .into_iter();
        while let Some(reply) = reloads.recv().await {
            let _ = reply.send(outcomes.next().unwrap_or(Ok(())));
        }
    });
    let ok = request(on.http_addr, "POST", "/-/reload").await;
    assert_eq!(ok.status, 200);
    let failed = request(on.http_addr, "PUT", "/-/reload").await;
    assert_eq!(failed.status, 500);
    assert!(String::from_utf8_lossy(&failed.body).contains("targets[0].regions: empty"));

    let get = request(on.http_addr, "GET", "/-/reload").await;
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST, PUT"));

    assert_eq!(request(on.http_addr, "POST", "/-/quit").await.status, 200);
    tokio::time::timeout(Duration::from_secs(5), quitting.wait_for(|q| *q))
        .await
        .expect("quit turns the shutdown signal on")
        .unwrap();
}

#[tokio::test]
async fn method_not_allowed_names_the_allowed_methods() {
    let (_turn, h) = started(Web::plain()).await;
    for path in ["/metrics", "/healthz", "/readyz", "/"] {
        let resp = request(h.http_addr, "POST", path).await;
        assert_eq!(resp.status, 405, "{path}");
        assert_eq!(resp.header("allow"), Some("GET, HEAD"), "{path}");
    }
    let head = request(h.http_addr, "HEAD", "/metrics").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(request(h.http_addr, "DELETE", "/nope").await.status, 404);
}

#[tokio::test]
async fn accept_encoding_q_values_are_honoured() {
    let (_turn, h) = started(Web::plain()).await;
    for (accept, gzip) in [
        ("gzip", true),
        ("GZIP;q=0.5", true),
        ("identity, *;q=0.1", true),
        ("gzip;q=0", false),
        ("gzip; q=0.0", false),
        ("gzip;q=0.000, deflate", false),
        ("*;q=1, gzip;q=0", false),
        ("*;q=0", false),
        ("identity", false),
    ] {
        let resp = http_get(h.http_addr, "/metrics", &[("Accept-Encoding", accept)]).await;
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("content-encoding") == Some("gzip"),
            gzip,
            "{accept}"
        );
    }
}

#[tokio::test]
async fn the_telemetry_path_is_configurable() {
    let (_turn, h) = started(Web {
        telemetry_path: "/prom/metrics".into(),
        ..Web::plain()
    })
    .await;
    let resp = http_get(h.http_addr, "/prom/metrics", &[]).await;
    assert_eq!(resp.status, 200);
    assert!(String::from_utf8_lossy(&resp.body).contains("aws_workflow_exporter_build_info"));
    assert_eq!(http_get(h.http_addr, "/metrics", &[]).await.status, 404);
    let landing = http_get(h.http_addr, "/", &[]).await;
    assert!(String::from_utf8_lossy(&landing.body).contains("href=\"/prom/metrics\""));
}
