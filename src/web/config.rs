//! The web configuration file (`--web.config.file`) in the format of Prometheus' exporter-toolkit:
//! `tls_server_config`, `http_server_config.headers` and `basic_auth_users` (bcrypt hashes).
//!
//! Loading validates everything and builds what the server uses (a rustls config, the users, the
//! headers); relative paths resolve against the file's folder. [`WebConfigHandle`] keeps the last
//! good configuration and re-reads the file (and the files it names) when their contents change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::auth::BasicAuth;
use super::files::{Reader, WebConfigError};
use super::tls::{self, RawTls};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// Accepted for compatibility; the server speaks HTTP/1.1 (ALPN `http/1.1`).
    #[allow(dead_code)]
    http2: Option<bool>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// The response headers exporter-toolkit allows, with the values it accepts (`None`: any).
const ALLOWED_HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Content-Security-Policy", None),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-XSS-Protection", None),
    ("Strict-Transport-Security", None),
];

/// A validated web configuration, ready to serve with.
#[derive(Debug, Default)]
pub struct WebConfig {
    /// `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `None`: no authentication.
    pub auth: Option<BasicAuth>,
    /// Added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl WebConfig {
    /// Loads and validates `file`; also returns every file it read, for change detection.
    pub fn load(file: &Path) -> Result<(Self, Vec<PathBuf>), WebConfigError> {
        let mut reader = Reader {
            file,
            watched: vec![file.to_path_buf()],
        };
        let text = std::fs::read_to_string(file).map_err(|e| reader.error("(file)", e))?;
        let raw: RawWebConfig = if text.trim().is_empty() {
            RawWebConfig::default()
        } else {
            serde_norway::from_str(&text).map_err(|e| reader.error("(yaml)", e))?
        };
        let tls = match &raw.tls_server_config {
            Some(t) => tls::server_config(t, &mut reader)?.map(Arc::new),
            None => None,
        };
        let auth = if raw.basic_auth_users.is_empty() {
            None
        } else {
            Some(
                BasicAuth::new(&raw.basic_auth_users).map_err(|(user, reason)| {
                    reader.error(format!("basic_auth_users.{user}"), reason)
                })?,
            )
        };
        let mut headers = Vec::new();
        for (name, value) in raw
            .http_server_config
            .map(|h| h.headers)
            .unwrap_or_default()
        {
            let field = format!("http_server_config.headers.{name}");
            let Some((canonical, allowed)) = ALLOWED_HEADERS
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(&name))
            else {
                let names: Vec<&str> = ALLOWED_HEADERS.iter().map(|(h, _)| *h).collect();
                return Err(
                    reader.error(field, format!("not allowed; allowed: {}", names.join(", ")))
                );
            };
            if value.is_empty() {
                continue; // exporter-toolkit: unset if blank
            }
            if let Some(allowed) = allowed {
                if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value)) {
                    return Err(
                        reader.error(field, format!("must be one of: {}", allowed.join(", ")))
                    );
                }
            }
            let value = HeaderValue::from_str(&value).map_err(|e| reader.error(&field, e))?;
            let name = HeaderName::from_bytes(canonical.as_bytes())
                .map_err(|e| reader.error(&field, e))?;
            headers.push((name, value));
        }
        let watched = reader.watched;
        Ok((Self { tls, auth, headers }, watched))
    }
}

/// A digest of the contents of `files` (a missing file counts as empty and differs from present).
fn fingerprint(files: &[PathBuf]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in files {
        h.update(f.as_os_str().as_encoded_bytes());
        match std::fs::read(f) {
            Ok(bytes) => {
                h.update([1]);
                h.update((bytes.len() as u64).to_le_bytes());
                h.update(&bytes);
            }
            Err(_) => h.update([0]),
        }
    }
    h.finalize().into()
}

struct Loaded {
    config: Arc<WebConfig>,
    watched: Vec<PathBuf>,
    /// Fingerprint of the contents last looked at (good or bad), so a bad file is logged once.
    seen: [u8; 32],
}

/// The web configuration in use: the last good one. Cheap to read on every request.
pub struct WebConfigHandle {
    file: Option<PathBuf>,
    loaded: RwLock<Loaded>,
}

impl std::fmt::Debug for WebConfigHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfigHandle")
            .field("file", &self.file)
            .finish()
    }
}

/// How often the web config file and the files it names are checked for changes.
pub const WEB_CONFIG_CHECK_INTERVAL: Duration = Duration::from_secs(1);

impl WebConfigHandle {
    /// No web config file: plain HTTP, no authentication.
    pub fn none() -> Self {
        Self {
            file: None,
            loaded: RwLock::new(Loaded {
                config: Arc::new(WebConfig::default()),
                watched: Vec::new(),
                seen: [0; 32],
            }),
        }
    }

    /// Loads `file` (an error here is fatal at startup).
    pub fn load(file: &Path) -> Result<Self, WebConfigError> {
        let (config, watched) = WebConfig::load(file)?;
        let seen = fingerprint(&watched);
        Ok(Self {
            file: Some(file.to_path_buf()),
            loaded: RwLock::new(Loaded {
                config: Arc::new(config),
                watched,
                seen,
            }),
        })
    }

    pub fn current(&self) -> Arc<WebConfig> {
        match self.loaded.read() {
            Ok(l) => l.config.clone(),
            Err(poisoned) => poisoned.into_inner().config.clone(),
        }
    }

    /// Re-reads the file now. On error the last good configuration stays in use.
    pub fn reload(&self) -> Result<(), WebConfigError> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let result = WebConfig::load(file);
        let mut loaded = match self.loaded.write() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        match result {
            Ok((config, watched)) => {
                loaded.seen = fingerprint(&watched);
                loaded.config = Arc::new(config);
                loaded.watched = watched;
                tracing::info!(file = %file.display(), "web config loaded");
                Ok(())
            }
            Err(e) => {
                loaded.seen = fingerprint(&loaded.watched);
                Err(e)
            }
        }
    }

    /// Reloads if the file or a file it names changed since last looked at; logs the outcome.
    pub fn reload_if_changed(&self) {
        let (watched, seen) = match self.loaded.read() {
            Ok(l) => (l.watched.clone(), l.seen),
            Err(poisoned) => {
                let l = poisoned.into_inner();
                (l.watched.clone(), l.seen)
            }
        };
        if watched.is_empty() || fingerprint(&watched) == seen {
            return;
        }
        if let Err(e) = self.reload() {
            tracing::error!(error = %e, "web config changed but is invalid; keeping the last good one");
        }
    }

    /// Checks for changes every [`WEB_CONFIG_CHECK_INTERVAL`] until `shutdown` turns true.
    pub async fn watch(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.file.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(WEB_CONFIG_CHECK_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let this = self.clone();
                    // File reads and certificate parsing: off the async workers.
                    let _ = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}
