//! The exporter binary as a child process: the one place tests and benchmarks start it.
//!
//! [`Binary`] builds the command line in a clean environment (static keys, no shared AWS files,
//! no instance metadata, a temporary home); [`Binary::run`] runs it to the end (subcommands,
//! start-up failures), [`Binary::start`] serves on a free loopback port until dropped. A
//! [`Daemon`] reads its JSON log as it comes and prints it when the test fails.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::{http_request, wait_for, wait_until, HttpResponse, Scrape, DEADLINE};

/// The exporter's command line, before it runs.
pub struct Binary {
    cmd: Command,
    home: tempfile::TempDir,
    log_level: String,
}

impl Default for Binary {
    fn default() -> Self {
        Self::new()
    }
}

impl Binary {
    /// The binary in a clean environment: the simulator's static keys, a temporary home, no
    /// shared AWS config or credentials file, no instance metadata, no `OTEL_*` settings.
    pub fn new() -> Self {
        let home = tempfile::tempdir().expect("temp dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_aws-workflow-exporter"));
        cmd.env_clear()
            .env("HOME", home.path())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_CONFIG_FILE", home.path().join("none"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.path().join("none"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        Self {
            cmd,
            home,
            log_level: "info".into(),
        }
    }

    /// The temporary directory the binary runs with as its home (for files a test writes).
    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub fn envs<'a>(mut self, vars: impl IntoIterator<Item = &'a (&'a str, &'a str)>) -> Self {
        for (k, v) in vars {
            self.cmd.env(k, v);
        }
        self
    }

    /// Runs from the repository root (for paths like `tests/config/bad/...`).
    pub fn in_repo(mut self) -> Self {
        self.cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
        self
    }

    /// Writes `yaml` to `config.yaml` in [`Binary::dir`] and passes it with `--config.file`.
    pub fn config(self, yaml: &str) -> Self {
        let file = self.write("config.yaml", yaml);
        self.config_file(file)
    }

    /// `--config.file path`.
    pub fn config_file(self, path: impl AsRef<Path>) -> Self {
        self.arg("--config.file").arg(path.as_ref())
    }

    /// Writes `text` to `name` in [`Binary::dir`]; its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let file = self.home.path().join(name);
        std::fs::write(&file, text).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        file
    }

    /// `--web.enable-lifecycle`: `POST /-/reload` and `/-/quit`.
    pub fn lifecycle(self) -> Self {
        self.arg("--web.enable-lifecycle")
    }

    /// The `--log.level` a started daemon logs at (`info` unless set; the listen address is
    /// read from an info line, so keep `info` for the exporter's own target).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.into();
        self
    }

    /// Runs to the end: a subcommand, or a start that must fail.
    pub fn run(mut self) -> Output {
        self.cmd.output().expect("the exporter binary runs")
    }

    /// Serves on a free loopback port, logging JSON; returns once it logged its address.
    pub fn start(mut self) -> Daemon {
        let level = self.log_level.clone();
        self.cmd
            .args([
                "--web.listen-address",
                "127.0.0.1:0",
                "--log.format",
                "json",
            ])
            .args(["--log.level", &level])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("the exporter binary starts");
        let logs: Logs = Arc::default();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let json = serde_json::from_str::<serde_json::Value>(&line).ok();
                if let Some(v) = json.as_ref().filter(|v| v["message"] == "serving metrics") {
                    let _ = addr_tx.send(v["address"].as_str().unwrap_or_default().to_owned());
                }
                sink.lock().unwrap().push(LogLine {
                    at: SystemTime::now(),
                    text: line,
                    json,
                });
            }
        });
        let mut daemon = Daemon {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            logs,
            _home: self.home,
        };
        daemon.addr = match addr_rx.recv_timeout(DEADLINE) {
            Ok(addr) => addr.parse().expect("a socket address"),
            Err(e) => panic!("the daemon did not log its listen address ({e})"),
        };
        daemon
    }
}

/// One line the daemon wrote to stderr, with when the test read it.
pub struct LogLine {
    pub at: SystemTime,
    pub text: String,
    /// The line parsed (the daemon logs JSON); `None` for anything else (a panic message).
    pub json: Option<serde_json::Value>,
}

type Logs = Arc<Mutex<Vec<LogLine>>>;

/// The exporter binary serving on loopback; killed on drop, its log printed if the test failed.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    logs: Logs,
    _home: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!(
                "--- log of the exporter at {} ({} lines) ---",
                self.addr,
                logs.len()
            );
            for l in logs.iter() {
                eprintln!("{}", l.text);
            }
            eprintln!("--- end of log ---");
        }
    }
}

impl Daemon {
    /// The process id (for /proc/PID/...).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("wait on the daemon").is_none()
    }

    pub fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// One request with `Connection: close`; `None` if the daemon does not answer.
    pub async fn request(&self, method: &str, path: &str) -> Option<HttpResponse> {
        self.request_with(method, path, &[]).await
    }

    /// [`Daemon::request`] with headers.
    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Option<HttpResponse> {
        let stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
        http_request(stream, method, path, headers).await.ok()
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

    /// `f` of every log line so far (in the order written).
    pub fn with_logs<R>(&self, f: impl FnOnce(&[LogLine]) -> R) -> R {
        f(&self.logs.lock().unwrap())
    }

    /// Whether any log line's message starts with `message`.
    pub fn logged(&self, message: &str) -> bool {
        self.logs.lock().unwrap().iter().any(|l| {
            l.json
                .as_ref()
                .and_then(|v| v["message"].as_str())
                .is_some_and(|m| m.starts_with(message))
        })
    }

    /// The last log line containing `text`, as written.
    pub fn last_log_line(&self, text: &str) -> Option<String> {
        let logs = self.logs.lock().unwrap();
        logs.iter()
            .rfind(|l| l.text.contains(text))
            .map(|l| l.text.clone())
    }
}
