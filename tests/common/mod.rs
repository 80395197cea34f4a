//! Shared integration-test harness: the simulator, an exporter polling it through the real SDK,
//! its HTTP server on loopback, and a parser for what /metrics returns.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use aws_workflow_exporter::app::Exporter;
use aws_workflow_exporter::aws::StaticCredentials;
use aws_workflow_exporter::config::Config;
use aws_workflow_exporter::simulator::{demo, Simulator, World};
use aws_workflow_exporter::web::{self, Web};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

pub fn credentials() -> Option<StaticCredentials> {
    Some(StaticCredentials {
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
    })
}

/// A config pointing at `endpoint` with only the named sources enabled.
pub fn config_for(endpoint: &str, sources: &[&str]) -> Config {
    let mut config = demo::demo_config(endpoint, std::time::Duration::from_secs(60));
    config.sources.enable_only(sources);
    // Tests must not wait on the API budget.
    config.aws_api.quota_share = 1.0;
    config.aws_api.max_attempts = 1;
    config
}

/// An exporter serving /metrics on loopback until dropped.
pub struct Served {
    pub exporter: Exporter,
    pub http_addr: SocketAddr,
    /// The access key id it signs with: the simulator's request log shows it per call.
    pub key: String,
    _shutdown: watch::Sender<bool>,
}

impl Served {
    /// Serves with `web` (TLS, authentication, limits; `Web::plain()` for none).
    pub async fn start(config: &Config, access_key: &str, web: Web) -> Self {
        let creds = StaticCredentials {
            access_key_id: access_key.into(),
            secret_access_key: "test".into(),
        };
        let exporter = Exporter::new(config, Some(creds));
        let listener = web::bind("127.0.0.1:0").await.expect("bind");
        let http_addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        tokio::spawn(web::serve(
            vec![listener],
            std::sync::Arc::new(web),
            exporter.http_state(),
            rx,
        ));
        Self {
            exporter,
            http_addr,
            key: access_key.into(),
            _shutdown: tx,
        }
    }

    /// GET /metrics over HTTP and parse it.
    pub async fn scrape(&self) -> Scrape {
        scrape_at(self.http_addr).await
    }
}

pub struct Harness {
    pub sim: Simulator,
    pub exporter: Exporter,
    pub http_addr: SocketAddr,
    _shutdown: watch::Sender<bool>,
}

impl Harness {
    /// Starts the simulator and an exporter for `sources`; `adjust` may change the config.
    pub async fn start(sources: &[&str], adjust: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_web(sources, adjust, Web::plain()).await
    }

    /// As [`Harness::start`], serving with `web` (TLS, authentication, limits).
    pub async fn start_with_web(
        sources: &[&str],
        adjust: impl FnOnce(&mut Config),
        web: Web,
    ) -> Self {
        let sim = Simulator::start().await.expect("simulator starts");
        let mut config = config_for(&sim.endpoint, sources);
        adjust(&mut config);
        let served = Served::start(&config, "test", web).await;
        Self {
            sim,
            exporter: served.exporter,
            http_addr: served.http_addr,
            _shutdown: served._shutdown,
        }
    }

    pub fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.sim.world()
    }

    /// One poll of every source.
    pub async fn poll(&mut self) {
        self.exporter.poll_once().await;
    }

    /// GET /metrics over HTTP and parse it.
    pub async fn scrape(&self) -> Scrape {
        scrape_at(self.http_addr).await
    }

    /// Calls per (service, operation) since the log was last cleared, then clears it.
    pub fn take_calls(&self) -> BTreeMap<(String, String), usize> {
        let mut w = self.world();
        let counts = w.call_counts();
        w.calls.clear();
        counts
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// GET /metrics over HTTP and parse it.
pub async fn scrape_at(addr: SocketAddr) -> Scrape {
    let resp = http_get(addr, "/metrics", &[]).await;
    assert_eq!(resp.status, 200);
    Scrape::parse(&String::from_utf8(resp.body).expect("utf-8 exposition"))
}

/// A minimal HTTP/1.1 GET, so tests see exactly what a scraper sees.
pub async fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    try_http_get(addr, path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// [`http_get`] that reports a failed connection or a malformed answer instead of panicking.
pub async fn try_http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse> {
    let stream = TcpStream::connect(addr).await?;
    http_request(stream, "GET", path, headers).await
}

/// One request with `Connection: close` on any stream (plain or TLS); the response read to EOF.
pub async fn http_request<S>(
    mut stream: S,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<HttpResponse>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    parse_response(&raw).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP response: {:?}", String::from_utf8_lossy(&raw)),
        )
    })
}

/// A whole HTTP/1.1 response (head and body) as read from the wire.
pub fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed text exposition.
#[derive(Debug, Clone)]
pub struct Scrape {
    pub text: String,
    pub samples: Vec<Sample>,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(parse_sample)
            .collect();
        Self {
            text: text.to_owned(),
            samples,
        }
    }

    /// Samples of `name` whose labels include every pair of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The value of the one sample matching; `None` if there is none, a panic if there are several.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<&Sample> = self.matching(name, labels).collect();
        assert!(
            found.len() <= 1,
            "{name}{labels:?} matches {} samples",
            found.len()
        );
        found.first().map(|s| s.value)
    }

    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    pub fn count(&self, name: &str, labels: &[(&str, &str)]) -> usize {
        self.matching(name, labels).count()
    }

    /// Names of every family with a `# TYPE` line.
    pub fn family_names(&self) -> Vec<String> {
        self.text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_owned)
            .collect()
    }
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').expect("sample line");
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    let (name, labels) = match series.split_once('{') {
        None => (series.to_owned(), BTreeMap::new()),
        Some((name, rest)) => (
            name.to_owned(),
            parse_labels(rest.strip_suffix('}').expect("closing brace")),
        ),
    };
    Sample {
        name,
        labels,
        value,
    }
}

fn parse_labels(mut s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"").expect("label");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => {}
                },
                '"' => {
                    end = i;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').to_owned(), value);
        s = rest[end + 1..].trim_start_matches(',');
    }
    out
}

/// Runs `promtool check metrics` on an exposition and asserts it reports nothing.
pub fn assert_promtool_clean(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (scripts/setup-tools.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics reported:\n{report}"
    );
}

/// How long [`wait_until`] waits.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Re-checks `cond` every 50 ms until it holds; panics after [`DEADLINE`]. For conditions with no
/// event to await (moto runs executions on its own threads, Prometheus scrapes on its own clock).
pub async fn wait_until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    wait_for(what, async || cond().await.then_some(())).await
}

/// Like [`wait_until`], for a condition that yields the value it found.
pub async fn wait_for<T>(what: &str, mut cond: impl AsyncFnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    let mut ticks = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        ticks.tick().await;
        if let Some(v) = cond().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
    }
}

/// The exporter binary run with `--config.file` (lifecycle API on, simulator credentials),
/// serving on a free loopback port; killed on drop.
pub struct Daemon {
    pub child: KillOnDrop,
    pub addr: SocketAddr,
}

impl Daemon {
    pub fn start(config_file: &std::path::Path) -> Self {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_aws-workflow-exporter"))
            .arg("--config.file")
            .arg(config_file)
            .args(["--web.listen-address", &addr.to_string()])
            .arg("--web.enable-lifecycle")
            .args(["--log.level", "warn"])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            child: KillOnDrop(child),
            addr,
        }
    }

    pub fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn request(&self, method: &str, path: &str) -> Option<HttpResponse> {
        let stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
        http_request(stream, method, path, &[]).await.ok()
    }

    /// GET /metrics, parsed; `None` until it answers 200.
    pub async fn scrape(&self) -> Option<Scrape> {
        let resp = self.request("GET", "/metrics").await?;
        (resp.status == 200).then(|| Scrape::parse(&String::from_utf8_lossy(&resp.body)))
    }

    /// Scrapes until `pred` holds; the matching scrape.
    pub async fn scrape_until(&self, what: &str, pred: impl Fn(&Scrape) -> bool) -> Scrape {
        wait_for(what, async || self.scrape().await.filter(|s| pred(s))).await
    }

    /// Until /readyz answers 200: every instance has had a first poll.
    pub async fn wait_until_ready(&self) {
        wait_until("ready", || async {
            self.request("GET", "/readyz")
                .await
                .is_some_and(|r| r.status == 200)
        })
        .await;
    }
}

/// A simulator with one running Distributed Map execution (`etl`, `nightly`) and its open map
/// run `run1`, half done (its ARN returned).
pub async fn one_open_run() -> (Simulator, String) {
    let sim = Simulator::start().await.unwrap();
    let now = aws_workflow_exporter::services::source::unix_now();
    let mut w = sim.world();
    let sm = w.sfn.add_state_machine("etl", now - 100.0);
    let exec = w.sfn.start_execution(&sm, "nightly", now - 50.0);
    let spec = aws_workflow_exporter::simulator::sfn::MapRunSpec {
        map_state: "Fan Out".into(),
        id: "run1".into(),
        total_items: 10,
        max_concurrency: 5,
        tolerated_failure_percentage: 0.0,
        tolerated_failure_count: 0,
    };
    let run = w.sfn.add_map_run(&exec, spec, now - 40.0);
    w.sfn.set_progress(&run, 5, 5, 0, 0);
    drop(w);
    (sim, run)
}

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

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free a moment ago, for a child process to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Validates `doc` against the JSON schema at `schema` (relative to the repository) with
/// Python's `jsonschema`, checking the schema itself first; `Err` has why not.
pub fn validate_json_schema(schema: &str, doc: &serde_json::Value) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("doc.json");
    std::fs::write(&file, doc.to_string()).expect("write the document");
    let schema = format!("{}/{schema}", env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.Draft202012Validator.check_schema(schema)\n\
             jsonschema.Draft202012Validator(schema).validate(json.load(open(sys.argv[2])))",
        ])
        .arg(schema)
        .arg(&file)
        .output()
        .expect("python3 runs (PATH needs the test venv: scripts/setup-tools.sh)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}
