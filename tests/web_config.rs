//! `--web.config.file`: TLS (with a certificate authority made here), mutual TLS, basic auth,
//! response headers and live re-reading, checked with real clients: rustls and Debian's Prometheus.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use std::time::{Duration, Instant};

use aws_workflow_exporter::web::{Limits, Web, WebConfigHandle};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{free_port, http_request, wait_until, Harness, HttpResponse, KillOnDrop};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const SOURCES: &[&str] = &["sfn_map_runs"];

/// A test certificate authority with a server certificate for 127.0.0.1 and a client certificate.
struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn leaf(
    issuer: &CertifiedIssuer<'_, KeyPair>,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn make_pki(name: &str) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    Pki {
        ca_pem: ca.pem(),
        server: leaf(
            &ca,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        client: leaf(&ca, &["scraper"], ExtendedKeyUsagePurpose::ClientAuth),
    }
}

fn bcrypt_hash(password: &str) -> String {
    // Cost 4 keeps tests fast; the format is what `htpasswd -nBC 10` writes.
    bcrypt::hash_with_salt(password, 4, *b"0123456789abcdef")
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes the PKI files into `dir` and a web config naming them by relative paths.
fn write_web_config(dir: &Path, pki: &Pki, extra: &str) -> PathBuf {
    write(dir, "ca.pem", &pki.ca_pem);
    write(dir, "server.pem", &pki.server.0);
    write(dir, "server-key.pem", &pki.server.1);
    write(
        dir,
        "web.yml",
        &format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n{extra}"
        ),
    )
}

fn web_for(file: &Path) -> Web {
    Web {
        config: Arc::new(WebConfigHandle::load(file).expect("valid web config")),
        ..Web::plain()
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// A rustls client trusting `ca_pem`, presenting `client` if given.
fn connector(ca_pem: &str, client: Option<&(String, String)>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

async fn https_get(
    addr: SocketAddr,
    tls: &TlsConnector,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = tls.connect(name, tcp).await?;
    http_request(stream, "GET", path, headers).await
}

/// A fresh PKI, a web config with TLS plus `extra`, and an exporter serving with it, polled once.
async fn start_tls(extra: &str) -> (tempfile::TempDir, Pki, Harness) {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki("test CA");
    let file = write_web_config(dir.path(), &pki, extra);
    let mut h = Harness::start_with_web(SOURCES, |_| {}, web_for(&file)).await;
    h.poll().await;
    (dir, pki, h)
}

#[tokio::test]
async fn basic_auth_over_tls_refuses_wrong_and_missing_passwords() {
    let (_dir, pki, h) = start_tls(&format!(
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\nbasic_auth_users:\n  alice: {}\n",
        bcrypt_hash("wonderland")
    ))
    .await;
    let tls = connector(&pki.ca_pem, None);

    let ok = https_get(
        h.http_addr,
        &tls,
        "/metrics",
        &[("Authorization", &basic("alice", "wonderland"))],
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    assert!(String::from_utf8_lossy(&ok.body).contains("aws_workflow_exporter_build_info"));
    assert_eq!(ok.header("x-frame-options"), Some("deny"));
    assert_eq!(ok.header("x-content-type-options"), Some("nosniff"));

    for (what, headers) in [
        ("missing", vec![]),
        (
            "wrong password",
            vec![("Authorization", basic("alice", "looking-glass"))],
        ),
        (
            "unknown user",
            vec![("Authorization", basic("bob", "wonderland"))],
        ),
        (
            "not basic",
            vec![("Authorization", "Bearer wonderland".to_owned())],
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for path in ["/metrics", "/healthz", "/readyz", "/", "/-/reload"] {
            let resp = https_get(h.http_addr, &tls, path, &headers).await.unwrap();
            assert_eq!(resp.status, 401, "{what} on {path}");
            assert_eq!(resp.header("www-authenticate"), Some("Basic"), "{what}");
            assert_eq!(resp.header("x-frame-options"), Some("deny"), "{what}");
        }
    }

    // Plain HTTP on the TLS port gets no answer.
    let plain = TcpStream::connect(h.http_addr).await.unwrap();
    assert!(http_request(plain, "GET", "/metrics", &[]).await.is_err());
}

#[tokio::test]
async fn clients_that_never_finish_a_tls_handshake_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki("test CA");
    let file = write_web_config(dir.path(), &pki, "");
    let web = Web {
        limits: Limits {
            tls_handshake_timeout: Duration::from_secs(2),
            ..Limits::default()
        },
        ..web_for(&file)
    };
    let h = Harness::start_with_web(SOURCES, |_| {}, web).await;
    let start = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(h.http_addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01]).await.unwrap(); // the start of a record, then nothing
        silent.push(tokio::spawn(async move {
            let mut buf = [0u8; 64];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            start.elapsed()
        }));
    }
    let tls = connector(&pki.ca_pem, None);
    let resp = https_get(h.http_addr, &tls, "/healthz", &[]).await.unwrap();
    assert_eq!(resp.status, 200, "served while 50 handshakes hang");
    for c in silent {
        let closed_after = tokio::time::timeout(Duration::from_secs(10), c)
            .await
            .expect("closed by the server")
            .unwrap();
        assert!(closed_after < Duration::from_secs(4), "{closed_after:?}");
    }
}

#[tokio::test]
async fn mutual_tls_refuses_a_client_without_a_certificate() {
    let (_dir, pki, h) = start_tls(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  min_version: TLS12\n",
    )
    .await;
    let other = make_pki("another CA");

    let with_cert = connector(&pki.ca_pem, Some(&pki.client));
    let resp = https_get(h.http_addr, &with_cert, "/healthz", &[])
        .await
        .unwrap();
    assert_eq!(resp.status, 200);

    let without = connector(&pki.ca_pem, None);
    let refused = https_get(h.http_addr, &without, "/healthz", &[]).await;
    assert!(
        refused.is_err(),
        "no client certificate: {:?}",
        refused.map(|r| r.status)
    );

    let foreign = connector(&pki.ca_pem, Some(&other.client));
    let refused = https_get(h.http_addr, &foreign, "/healthz", &[]).await;
    assert!(
        refused.is_err(),
        "certificate of another CA: {:?}",
        refused.map(|r| r.status)
    );
}

#[tokio::test]
async fn a_changed_web_config_takes_effect_without_restart_and_a_broken_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki("test CA");
    let users = |names: &[&str]| -> String {
        let mut s = "basic_auth_users:\n".to_owned();
        for n in names {
            s.push_str(&format!("  {n}: {}\n", bcrypt_hash(&format!("{n}-pw"))));
        }
        s
    };
    let file = write_web_config(dir.path(), &pki, &users(&["alice"]));
    let web = web_for(&file);
    let handle = web.config.clone();
    let h = Harness::start_with_web(SOURCES, |_| {}, web).await;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(handle.clone().watch(rx));
    let tls = connector(&pki.ca_pem, None);
    let status = |user: &'static str| {
        let tls = tls.clone();
        let addr = h.http_addr;
        async move {
            let auth = basic(user, &format!("{user}-pw"));
            https_get(addr, &tls, "/healthz", &[("Authorization", &auth)])
                .await
                .map(|r| r.status)
                .unwrap_or(0)
        }
    };
    assert_eq!(status("alice").await, 200);
    assert_eq!(status("bob").await, 401);

    // A new user: picked up by the watcher.
    write_web_config(dir.path(), &pki, &users(&["alice", "bob"]));
    wait_until("bob is let in", || async { status("bob").await == 200 }).await;

    // A rotated certificate from another CA: new connections get it.
    let rotated = make_pki("rotated CA");
    write(dir.path(), "server.pem", &rotated.server.0);
    write(dir.path(), "server-key.pem", &rotated.server.1);
    let new_ca = connector(&rotated.ca_pem, None);
    wait_until("the new certificate is served", || async {
        https_get(
            h.http_addr,
            &new_ca,
            "/healthz",
            &[("Authorization", &basic("bob", "bob-pw"))],
        )
        .await
        .is_ok_and(|r| r.status == 200)
    })
    .await;

    // A broken file: an explicit reload says why, and the last good configuration stays.
    std::fs::write(&file, "basic_auth_users:\n  carol: not-a-hash\n").unwrap();
    let err = handle.reload().unwrap_err().to_string();
    assert!(
        err.contains("web.yml") && err.contains("basic_auth_users.carol") && err.contains("bcrypt"),
        "{err}"
    );
    let still = https_get(
        h.http_addr,
        &new_ca,
        "/healthz",
        &[("Authorization", &basic("bob", "bob-pw"))],
    )
    .await
    .unwrap();
    assert_eq!(still.status, 200);
    let _ = tx.send(true);
}

#[test]
fn invalid_web_configs_name_the_field_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki("test CA");
    write(dir.path(), "server.pem", &pki.server.0);
    write(dir.path(), "server-key.pem", &pki.server.1);
    write(dir.path(), "ca.pem", &pki.ca_pem);
    let tls = "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n";
    let cases = [
        ("rate_limit:\n  burst: 1\n", "unknown field `rate_limit`"),
        (
            "tls_server_config:\n  cert_file: server.pem\n",
            "tls_server_config.key_file: missing",
        ),
        (
            "tls_server_config:\n  cert_file: nope.pem\n  key_file: server-key.pem\n",
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: server-key.pem\n  key_file: server-key.pem\n",
            "tls_server_config.cert_file: no PEM certificate",
        ),
        (
            &format!("{tls}  min_version: TLS10\n"),
            "tls_server_config.min_version: TLS10 is not supported",
        ),
        (
            &format!("{tls}  min_version: TLS13\n  max_version: TLS12\n"),
            "min_version: is above max_version",
        ),
        (
            &format!("{tls}  client_auth_type: RequireAnyClientCert\n"),
            "client_auth_type: RequireAnyClientCert accepts certificates without verifying",
        ),
        (
            &format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            "client_ca_file: required",
        ),
        (
            &format!("{tls}  client_ca_file: ca.pem\n"),
            "client_ca_file: set without a client_auth_type",
        ),
        (
            &format!("{tls}  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n"),
            "cipher_suites: `TLS_RSA_WITH_RC4_128_SHA` is not supported",
        ),
        (
            &format!("{tls}  curve_preferences: [CurveP521]\n"),
            "curve_preferences: `CurveP521` is not supported",
        ),
        (
            "http_server_config:\n  headers:\n    X-Powered-By: me\n",
            "headers.X-Powered-By: not allowed",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "headers.X-Frame-Options: must be one of: deny, sameorigin",
        ),
        (
            "basic_auth_users:\n  alice: secret\n",
            "basic_auth_users.alice: not a bcrypt hash",
        ),
        ("basic_auth_users: [alice]\n", "(yaml)"),
    ];
    for (text, expected) in cases {
        let file = write(dir.path(), "web.yml", text);
        let err = WebConfigHandle::load(&file).unwrap_err().to_string();
        assert!(
            err.contains("web.yml") && err.contains(expected),
            "{text}: {err}"
        );
    }
    // Accepted: the documented options rustls can honour, inline PEM, and an empty file.
    let ok = format!(
        "{tls}  client_auth_type: VerifyClientCertIfGiven\n  client_ca: |\n{}\n  min_version: TLS12\n  max_version: TLS13\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305]\n  prefer_server_cipher_suites: false\n  curve_preferences: [X25519, CurveP256]\nhttp_server_config:\n  http2: false\n  headers:\n    Strict-Transport-Security: max-age=31536000\n",
        pki.ca_pem.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
    );
    let file = write(dir.path(), "web.yml", &ok);
    WebConfigHandle::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let file = write(dir.path(), "web.yml", "");
    assert!(WebConfigHandle::load(&file)
        .unwrap()
        .current()
        .tls
        .is_none());
}

#[tokio::test]
async fn the_readme_example_web_config_is_valid() {
    let readme = include_str!("../README.md");
    let section = &readme[readme
        .find("## TLS and basic auth")
        .expect("the README section")..];
    let start = section.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let example = &section[start..start + section[start..].find("```").expect("block end")];
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki("test CA");
    write(dir.path(), "server.crt", &pki.server.0);
    write(dir.path(), "server.key", &pki.server.1);
    write(dir.path(), "ca.crt", &pki.ca_pem);
    let file = write(dir.path(), "web.yml", example);
    let handle = WebConfigHandle::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let config = handle.current();
    assert!(config.tls.is_some() && config.headers.len() == 2);
    // The hash is of the password its comment gives.
    let auth = config.auth.as_ref().expect("basic_auth_users");
    let header = |pw: &str| hyper::header::HeaderValue::from_str(&basic("prometheus", pw)).unwrap();
    assert!(auth.check(Some(&header("change-me"))).await);
    assert!(!auth.check(Some(&header("changeme"))).await);
}

#[test]
fn a_broken_web_config_at_start_is_a_clear_error_and_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "web.yml",
        "basic_auth_users:\n  alice: secret\n",
    );
    let out = common::Binary::new()
        .args(["--web.listen-address", "127.0.0.1:0", "--web.config.file"])
        .arg(&file)
        .run();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("web.yml: basic_auth_users.alice: not a bcrypt hash"),
        "{stderr}"
    );
}

/// The value of `metric{job="<job>"}` in Prometheus, if it answers and has one yet.
async fn query(prom: SocketAddr, metric: &str, job: &str) -> Option<String> {
    let stream = TcpStream::connect(prom).await.ok()?;
    let path = format!("/api/v1/query?query={metric}%7Bjob%3D%22{job}%22%7D");
    let resp = http_request(stream, "GET", &path, &[]).await.ok()?;
    let json: serde_json::Value = serde_json::from_slice(&resp.body).ok()?;
    json["data"]["result"][0]["value"][1]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn prometheus_scrapes_over_mutual_tls_with_basic_auth() {
    let (dir, pki, h) = start_tls(&format!(
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\nbasic_auth_users:\n  prometheus: {}\n",
        bcrypt_hash("scrape-secret")
    ))
    .await;

    write(dir.path(), "client.pem", &pki.client.0);
    write(dir.path(), "client-key.pem", &pki.client.1);
    let job = |name: &str, password: &str| {
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: ca.pem\n      cert_file: client.pem\n      key_file: client-key.pem\n    basic_auth:\n      username: prometheus\n      password: {password}\n    static_configs:\n      - targets: ['{}']\n",
            h.http_addr
        )
    };
    let prom_config = write(
        dir.path(),
        "prometheus.yml",
        &format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n{}{}",
            job("exporter", "scrape-secret"),
            job("wrong-password", "guess")
        ),
    );
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", prom_config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start prometheus ({e}); run scripts/setup-tools.sh"));
    let _prometheus = KillOnDrop(child);

    wait_until("Prometheus reports up == 1 over HTTPS", || async {
        query(addr, "up", "exporter").await.as_deref() == Some("1")
    })
    .await;
    wait_until(
        "Prometheus reports up == 0 with a wrong password",
        || async { query(addr, "up", "wrong-password").await.as_deref() == Some("0") },
    )
    .await;
    // What it scraped is the exporter's metrics.
    let build_info = query(addr, "aws_workflow_exporter_build_info", "exporter").await;
    assert_eq!(build_info.as_deref(), Some("1"));
}
