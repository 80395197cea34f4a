//! The `otlp:` section of the config file and the standard `OTEL_*` environment variables,
//! merged into one [`OtlpConfig`]. Where the file and the environment both set something,
//! the file wins (per header and per resource attribute for those maps).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Deserialize;

use crate::config::check::{Check, DurationText};

/// Validated OTLP push settings; present only when an endpoint is configured.
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The full URL metrics are POSTed to, e.g. `http://collector:4318/v1/metrics`.
    pub endpoint: String,
    pub headers: BTreeMap<String, String>,
    pub timeout: Duration,
    pub gzip: bool,
    pub interval: Duration,
    /// PEM CA bundle trusted instead of the system roots.
    pub certificate: Option<PathBuf>,
    /// Resource attributes set by the user (`service.name` included when set).
    pub resource_attributes: BTreeMap<String, String>,
    /// Data points per export request; a push of more is sent as several requests.
    pub max_points_per_request: usize,
}

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// About 2 MB of messages while a request is built; 57,000 series make 29 requests of about
/// 40 KB gzipped (docs/benchmarks.md).
pub const DEFAULT_MAX_POINTS_PER_REQUEST: usize = 2_000;
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The section as written in the file.
pub mod raw {
    use super::*;

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Otlp {
        /// `false` turns push off even if `OTEL_EXPORTER_OTLP_*ENDPOINT` is set.
        pub enabled: Option<bool>,
        /// Base URL; `/v1/metrics` is appended (like `OTEL_EXPORTER_OTLP_ENDPOINT`).
        pub endpoint: Option<String>,
        /// Full URL used as is (like `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
        pub metrics_endpoint: Option<String>,
        /// Only `http/protobuf`.
        pub protocol: Option<String>,
        /// Extra request headers, e.g. an authorization token.
        #[serde(default)]
        pub headers: BTreeMap<String, String>,
        /// Time limit of one export request.
        pub timeout: Option<DurationText>,
        /// `gzip` or `none`.
        pub compression: Option<String>,
        /// Time between pushes.
        pub interval: Option<DurationText>,
        /// PEM file of CA certificates to trust instead of the system roots.
        pub certificate: Option<PathBuf>,
        /// Overrides `service.name`.
        pub service_name: Option<String>,
        /// Data points per export request (at least 1).
        pub max_points_per_request: Option<usize>,
        /// Extra resource attributes.
        #[serde(default)]
        pub resource_attributes: BTreeMap<String, String>,
    }
}

/// Reads one environment variable; injected so tests need not touch the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, ignoring empty values as the OpenTelemetry spec asks.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A value that comes either from a file field or an environment variable, for error messages.
struct Setting {
    value: String,
    origin: String,
}

struct Merge<'a> {
    file: &'a raw::Otlp,
    env: Env<'a>,
    c: &'a mut Check,
}

impl Merge<'_> {
    fn fail(&mut self, origin: &str, reason: impl Into<String>) {
        self.c.fail(origin, reason);
    }

    /// The signal-specific variable first, then the generic one.
    fn env(&self, generic: &str) -> Option<Setting> {
        [metrics_specific(generic), generic.to_owned()]
            .into_iter()
            .find_map(|name| {
                (self.env)(&name).map(|value| Setting {
                    value: value.trim().to_owned(),
                    origin: format!("{name} (environment)"),
                })
            })
    }

    fn file(&self, field: &str, value: &Option<String>) -> Option<Setting> {
        value.as_ref().map(|v| Setting {
            value: v.trim().to_owned(),
            origin: format!("otlp.{field}"),
        })
    }

    fn endpoint(&mut self) -> Option<String> {
        let file_metrics = self.file("metrics_endpoint", &self.file.metrics_endpoint);
        let file_base = self.file("endpoint", &self.file.endpoint);
        let env_metrics = (self.env)("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").map(|v| Setting {
            value: v.trim().to_owned(),
            origin: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT (environment)".into(),
        });
        let env_base = (self.env)("OTEL_EXPORTER_OTLP_ENDPOINT").map(|v| Setting {
            value: v.trim().to_owned(),
            origin: "OTEL_EXPORTER_OTLP_ENDPOINT (environment)".into(),
        });
        let (setting, append) = match (file_metrics, file_base) {
            (Some(s), _) => (s, false),
            (None, Some(s)) => (s, true),
            (None, None) => match (env_metrics, env_base) {
                (Some(s), _) => (s, false),
                (None, Some(s)) => (s, true),
                (None, None) => return None,
            },
        };
        let url = &setting.value;
        let Some(rest) = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        else {
            self.fail(
                &setting.origin,
                format!("`{url}` must start with http:// or https://"),
            );
            return None;
        };
        if rest.is_empty() || rest.starts_with('/') {
            self.fail(&setting.origin, format!("`{url}` has no host"));
            return None;
        }
        if url.parse::<hyper::Uri>().is_err() {
            self.fail(&setting.origin, format!("`{url}` is not a valid URL"));
            return None;
        }
        Some(if append {
            format!("{}/v1/metrics", url.trim_end_matches('/'))
        } else {
            url.clone()
        })
    }

    /// A duration from the file (through [`Check::duration`], as every section's) or else from
    /// the environment in milliseconds; both obey the kit's bounds.
    fn duration(
        &mut self,
        file_field: &str,
        file: &Option<DurationText>,
        env_name: &str,
        default: Duration,
        min: Duration,
    ) -> Duration {
        if file.is_some() {
            return self
                .c
                .duration(&format!("otlp.{file_field}"), file, default, min);
        }
        let Some(ms) = (self.env)(env_name) else {
            return default;
        };
        let origin = format!("{env_name} (environment)");
        match ms.trim().parse::<u64>() {
            Ok(n) => self
                .c
                .bounded(&origin, Duration::from_millis(n), min)
                .unwrap_or(default),
            Err(_) => {
                self.fail(
                    &origin,
                    format!("`{ms}` is not a whole number of milliseconds"),
                );
                default
            }
        }
    }

    /// `key=value,key2=value2` with percent-encoded values (OTEL_RESOURCE_ATTRIBUTES, OTEL_*_HEADERS).
    fn pairs(&mut self, setting: Option<Setting>) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(setting) = setting else {
            return out;
        };
        for item in setting.value.split(',').filter(|i| !i.trim().is_empty()) {
            let Some((key, value)) = item.split_once('=') else {
                self.fail(
                    &setting.origin,
                    format!("`{item}` is not key=value (list items are separated by commas)"),
                );
                continue;
            };
            let decoded = percent_encoding::percent_decode_str(value.trim()).decode_utf8();
            match (key.trim(), decoded) {
                ("", _) => self.fail(&setting.origin, format!("`{item}` has an empty key")),
                (_, Err(_)) => self.fail(
                    &setting.origin,
                    format!("`{item}`: the value is not valid percent-encoded UTF-8"),
                ),
                (k, Ok(v)) => {
                    out.insert(k.to_owned(), v.into_owned());
                }
            }
        }
        out
    }
}

/// Merges the file section with the environment, each failure into `c` under its origin (the
/// file's field or the environment variable). `None`: push is off, or the section failed.
pub fn validate(c: &mut Check, file: &raw::Otlp, env: Env) -> Option<OtlpConfig> {
    let failures_before = c.failures();
    let mut m = Merge { file, env, c };
    let endpoint = m.endpoint();

    let protocol = m
        .file("protocol", &file.protocol)
        .or_else(|| m.env("OTEL_EXPORTER_OTLP_PROTOCOL"));
    if let Some(p) = protocol {
        match p.value.as_str() {
            "http/protobuf" => {}
            "grpc" => m.fail(
                &p.origin,
                "`grpc` is not supported: use `http/protobuf` (receivers listen on port 4318 for it). \
                 gRPC would pull in a second HTTP/2 client stack (tonic) for the same data",
            ),
            other => m.fail(
                &p.origin,
                format!("unsupported protocol `{other}`: only `http/protobuf` is supported"),
            ),
        }
    }
    if let Some(t) = m.env("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") {
        if !t.value.eq_ignore_ascii_case("cumulative") {
            m.fail(
                &t.origin,
                format!("`{}` is not supported: the exporter pushes cumulative sums and histograms, as Prometheus exposes them", t.value),
            );
        }
    }

    let compression = m
        .file("compression", &file.compression)
        .or_else(|| m.env("OTEL_EXPORTER_OTLP_COMPRESSION"));
    let gzip = match compression {
        None => false,
        Some(c) => match c.value.as_str() {
            "gzip" => true,
            "none" => false,
            other => {
                m.fail(
                    &c.origin,
                    format!("unsupported compression `{other}`: use `gzip` or `none`"),
                );
                false
            }
        },
    };

    let timeout = m.duration(
        "timeout",
        &file.timeout,
        &env_name(&m, "OTEL_EXPORTER_OTLP_TIMEOUT"),
        DEFAULT_TIMEOUT,
        Duration::from_millis(100),
    );
    let interval = m.duration(
        "interval",
        &file.interval,
        "OTEL_METRIC_EXPORT_INTERVAL",
        DEFAULT_INTERVAL,
        MIN_INTERVAL,
    );

    let max_points_per_request = file
        .max_points_per_request
        .unwrap_or(DEFAULT_MAX_POINTS_PER_REQUEST);
    if max_points_per_request == 0 {
        m.fail(
            "otlp.max_points_per_request",
            "must be at least 1".to_owned(),
        );
    }

    let env_headers = m.env("OTEL_EXPORTER_OTLP_HEADERS");
    let mut headers = m.pairs(env_headers);
    headers.extend(file.headers.clone());
    for (name, value) in &headers {
        if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            m.fail(
                "otlp.headers",
                format!("`{name}` is not a valid header name"),
            );
        } else if hyper::header::HeaderValue::from_str(value).is_err() {
            m.fail(
                "otlp.headers",
                format!("the value of `{name}` is not a valid header value"),
            );
        }
    }

    let certificate = match (&file.certificate, m.env("OTEL_EXPORTER_OTLP_CERTIFICATE")) {
        (Some(path), _) => Some((path.clone(), "otlp.certificate".to_owned())),
        (None, Some(s)) => Some((PathBuf::from(s.value), s.origin)),
        (None, None) => None,
    };
    if let Some((path, origin)) = &certificate {
        if let Err(reason) = load_ca(path) {
            m.fail(origin, reason);
        }
    }

    let env_resource = (m.env)("OTEL_RESOURCE_ATTRIBUTES").map(|value| Setting {
        value,
        origin: "OTEL_RESOURCE_ATTRIBUTES (environment)".into(),
    });
    let mut resource_attributes = m.pairs(env_resource);
    if let Some(name) = (m.env)("OTEL_SERVICE_NAME") {
        resource_attributes.insert("service.name".into(), name.trim().to_owned());
    }
    resource_attributes.extend(file.resource_attributes.clone());
    if let Some(name) = &file.service_name {
        resource_attributes.insert("service.name".into(), name.clone());
    }

    if m.c.failures() > failures_before || file.enabled == Some(false) {
        return None;
    }
    // The spec's switch for every signal; `otlp.enabled: true` in the file still wins.
    let sdk_disabled =
        (m.env)("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if file.enabled.is_none() && sdk_disabled {
        return None;
    }
    if file.enabled == Some(true) && endpoint.is_none() {
        m.fail(
            "otlp.enabled",
            "needs otlp.endpoint, otlp.metrics_endpoint or OTEL_EXPORTER_OTLP_ENDPOINT",
        );
        return None;
    }
    endpoint.map(|endpoint| OtlpConfig {
        endpoint,
        headers,
        timeout,
        gzip,
        interval,
        certificate: certificate.map(|(p, _)| p),
        resource_attributes,
        max_points_per_request,
    })
}

/// `OTEL_EXPORTER_OTLP_X` -> `OTEL_EXPORTER_OTLP_METRICS_X`.
fn metrics_specific(generic: &str) -> String {
    generic.replacen("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_METRICS_", 1)
}

/// The signal-specific variable's name if it is set, else the generic one.
fn env_name(m: &Merge, generic: &str) -> String {
    let specific = metrics_specific(generic);
    if (m.env)(&specific).is_some() {
        specific
    } else {
        generic.to_owned()
    }
}

/// Reads a PEM CA bundle; the error is a sentence for the config error that names the field.
pub fn load_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldError;

    /// The section validated alone, its failures as the whole file's would be.
    fn validate(file: &raw::Otlp, env: Env) -> Result<Option<OtlpConfig>, Vec<FieldError>> {
        let mut c = Check::default();
        let otlp = super::validate(&mut c, file, env);
        c.finish(otlp)
    }

    fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    fn file(yaml: &str) -> raw::Otlp {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn no_endpoint_means_no_push() {
        assert_eq!(validate(&raw::Otlp::default(), &env_of(&[])).unwrap(), None);
    }

    #[test]
    fn environment_alone_configures_everything() {
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318/"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20abc,x-tenant=t1",
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod,service.name=x",
            ),
            ("OTEL_SERVICE_NAME", "workflows"),
        ]);
        let c = validate(&raw::Otlp::default(), &env).unwrap().unwrap();
        assert_eq!(c.endpoint, "https://collector:4318/v1/metrics");
        assert_eq!(c.headers["authorization"], "Bearer abc");
        assert_eq!(c.headers["x-tenant"], "t1");
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert!(c.gzip);
        assert_eq!(c.interval, Duration::from_secs(15));
        assert_eq!(c.resource_attributes["service.name"], "workflows");
        assert_eq!(c.resource_attributes["deployment.environment"], "prod");
    }

    #[test]
    fn otel_sdk_disabled_turns_push_off_unless_the_file_enables_it() {
        let env = |disabled| {
            env_of(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_SDK_DISABLED", disabled),
            ])
        };
        let default = raw::Otlp::default();
        assert_eq!(validate(&default, &env("true")).unwrap(), None);
        assert_eq!(validate(&default, &env(" TRUE ")).unwrap(), None);
        // Only `true` disables, as the spec's booleans go.
        assert!(validate(&default, &env("false")).unwrap().is_some());
        assert!(validate(&default, &env("1")).unwrap().is_some());
        let enabled = file("enabled: true\n");
        assert!(validate(&enabled, &env("true")).unwrap().is_some());
    }

    #[test]
    fn the_file_wins_where_both_are_set() {
        let env = env_of(&[
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://env:4318/v1/metrics",
            ),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=env,b=env"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_SERVICE_NAME", "from-env"),
            ("OTEL_RESOURCE_ATTRIBUTES", "team=env,site=env"),
        ]);
        let f = file(
            "endpoint: http://file:4318\nheaders: {a: file}\ntimeout: 3s\nservice_name: from-file\nresource_attributes: {team: file}\n",
        );
        let c = validate(&f, &env).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://file:4318/v1/metrics");
        assert_eq!(c.headers["a"], "file");
        assert_eq!(c.headers["b"], "env");
        assert_eq!(c.timeout, Duration::from_secs(3));
        assert_eq!(c.resource_attributes["service.name"], "from-file");
        assert_eq!(c.resource_attributes["team"], "file");
        assert_eq!(c.resource_attributes["site"], "env");
        // A metrics-specific variable beats the generic one.
        let env = env_of(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://specific:9999/custom",
            ),
        ]);
        let c = validate(&raw::Otlp::default(), &env).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://specific:9999/custom");
        // The file can turn off push configured by the environment.
        let c = validate(&file("enabled: false\n"), &env).unwrap();
        assert_eq!(c, None);
    }

    #[test]
    fn bad_settings_name_their_origin() {
        let reasons = |f: &raw::Otlp, vars: &[(&str, &str)]| -> String {
            validate(f, &env_of(vars))
                .unwrap_err()
                .iter()
                .map(|e| format!("{}: {}", e.path, e.reason))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let grpc = reasons(
            &raw::Otlp::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ],
        );
        assert!(
            grpc.contains("OTEL_EXPORTER_OTLP_PROTOCOL (environment): `grpc` is not supported"),
            "{grpc}"
        );
        let r = reasons(
            &file("endpoint: collector:4318\ncompression: zstd\ninterval: 10ms\ncertificate: /nonexistent/ca.pem\nmax_points_per_request: 0\n"),
            &[
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ],
        );
        for want in [
            "otlp.endpoint: `collector:4318` must start with http://",
            "otlp.compression: unsupported compression `zstd`",
            "otlp.interval: must be at least 100ms",
            "otlp.max_points_per_request: must be at least 1",
            "OTEL_EXPORTER_OTLP_TIMEOUT (environment): `10s` is not a whole number of milliseconds",
            "otlp.certificate: cannot read /nonexistent/ca.pem",
            "OTEL_EXPORTER_OTLP_HEADERS (environment): `novalue` is not key=value",
        ] {
            assert!(r.contains(want), "{want} not in\n{r}");
        }
    }

    #[test]
    fn durations_obey_the_bounds_of_every_other_section() {
        let far = validate(
            &file("endpoint: http://c:4318\ninterval: 100d\n"),
            &env_of(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "8000000000")]),
        )
        .unwrap_err();
        let far: Vec<String> = far
            .iter()
            .map(|e| format!("{}: {}", e.path, e.reason))
            .collect();
        assert!(
            far.contains(&"otlp.interval: must be at most 90d".to_owned()),
            "{far:?}"
        );
        assert!(
            far.contains(
                &"OTEL_EXPORTER_OTLP_TIMEOUT (environment): must be at most 90d".to_owned()
            ),
            "{far:?}"
        );
    }
}
