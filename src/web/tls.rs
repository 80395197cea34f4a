//! `tls_server_config` -> a rustls server configuration. Names follow Go's crypto/tls as
//! exporter-toolkit documents them; what rustls does not implement is refused with a reason.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::aws_lc_rs::{cipher_suite as cs, default_provider, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite, SupportedProtocolVersion};

use serde::Deserialize;

use super::files::{Reader, WebConfigError};

/// `tls_server_config` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_ca: Option<String>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth_type: Option<String>,
    #[serde(default)]
    pub client_allowed_sans: Vec<String>,
    pub min_version: Option<String>,
    pub max_version: Option<String>,
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    pub prefer_server_cipher_suites: Option<bool>,
    #[serde(default)]
    pub curve_preferences: Vec<String>,
}

/// TLS 1.2 cipher suites by their Go names (TLS 1.3 suites are not configurable, as in Go).
const CIPHER_SUITES: &[(&str, SupportedCipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

const CURVES: &[(&str, &dyn SupportedKxGroup)] = &[
    ("X25519", kx_group::X25519),
    ("CurveP256", kx_group::SECP256R1),
    ("CurveP384", kx_group::SECP384R1),
    ("X25519MLKEM768", kx_group::X25519MLKEM768),
];

/// The entries of `table` named by `names`, in that order; an unknown name is an error.
fn by_name<T: Copy>(
    reader: &Reader<'_>,
    field: &str,
    table: &[(&str, T)],
    names: &[String],
) -> Result<Vec<T>, WebConfigError> {
    names
        .iter()
        .map(|name| {
            table
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| *v)
                .ok_or_else(|| {
                    let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
                    reader.error(
                        field,
                        format!("`{name}` is not supported; supported: {}", known.join(", ")),
                    )
                })
        })
        .collect()
}

fn version(
    reader: &Reader<'_>,
    field: &str,
    value: Option<&str>,
    default: u8,
) -> Result<u8, WebConfigError> {
    match value {
        None => Ok(default),
        Some("TLS12") => Ok(2),
        Some("TLS13") => Ok(3),
        Some(v @ ("TLS10" | "TLS11")) => Err(reader.error(
            field,
            format!("{v} is not supported (rustls implements TLS12 and TLS13 only)"),
        )),
        Some(v) => Err(reader.error(
            field,
            format!("unknown TLS version `{v}`; use TLS12 or TLS13"),
        )),
    }
}

/// PEM from the inline field or the file field (exactly one of them, or neither).
fn pem(
    reader: &mut Reader<'_>,
    inline: (&str, Option<&String>),
    file: (&str, Option<&std::path::PathBuf>),
) -> Result<Option<Vec<u8>>, WebConfigError> {
    match (inline.1, file.1) {
        (Some(_), Some(_)) => Err(reader.error(
            file.0,
            format!("set either {} or {}, not both", inline.0, file.0),
        )),
        (Some(text), None) => Ok(Some(text.as_bytes().to_vec())),
        (None, Some(path)) => reader.read(file.0, path).map(Some),
        (None, None) => Ok(None),
    }
}

fn certificates(
    reader: &Reader<'_>,
    field: &str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, WebConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| reader.error(field, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(reader.error(field, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Builds the rustls configuration; `Ok(None)` when no certificate is configured (plain HTTP).
pub(super) fn server_config(
    raw: &RawTls,
    reader: &mut Reader<'_>,
) -> Result<Option<ServerConfig>, WebConfigError> {
    const P: &str = "tls_server_config";
    let f = |name: &str| format!("{P}.{name}");
    let cert = pem(
        reader,
        (&f("cert"), raw.cert.as_ref()),
        (&f("cert_file"), raw.cert_file.as_ref()),
    )?;
    let key = pem(
        reader,
        (&f("key"), raw.key.as_ref()),
        (&f("key_file"), raw.key_file.as_ref()),
    )?;
    let client_ca = pem(
        reader,
        (&f("client_ca"), raw.client_ca.as_ref()),
        (&f("client_ca_file"), raw.client_ca_file.as_ref()),
    )?;
    let (cert, key) = match (cert, key) {
        (None, None) => {
            if client_ca.is_some() || raw.client_auth_type.is_some() {
                return Err(reader.error(P, "client authentication needs cert_file and key_file"));
            }
            return Ok(None);
        }
        (Some(_), None) => return Err(reader.error(f("key_file"), "missing (cert_file is set)")),
        (None, Some(_)) => return Err(reader.error(f("cert_file"), "missing (key_file is set)")),
        (Some(c), Some(k)) => (c, k),
    };
    let certs = certificates(reader, &f("cert_file"), &cert)?;
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| reader.error(f("key_file"), format!("not a PEM private key: {e}")))?;

    let min = version(reader, &f("min_version"), raw.min_version.as_deref(), 2)?;
    let max = version(reader, &f("max_version"), raw.max_version.as_deref(), 3)?;
    if min > max {
        return Err(reader.error(f("min_version"), "is above max_version"));
    }
    let versions: Vec<&'static SupportedProtocolVersion> =
        [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();

    let mut provider: CryptoProvider = default_provider();
    if !raw.cipher_suites.is_empty() {
        let tls13 = provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS13)
            .copied();
        let tls12 = by_name(
            reader,
            &f("cipher_suites"),
            CIPHER_SUITES,
            &raw.cipher_suites,
        )?;
        provider.cipher_suites = tls13.chain(tls12).collect();
    }
    if !raw.curve_preferences.is_empty() {
        provider.kx_groups = by_name(
            reader,
            &f("curve_preferences"),
            CURVES,
            &raw.curve_preferences,
        )?;
    }
    let provider = Arc::new(provider);

    let auth_type = raw.client_auth_type.as_deref().unwrap_or("NoClientCert");
    if !raw.client_allowed_sans.is_empty() {
        return Err(reader.error(f("client_allowed_sans"), "is not supported"));
    }
    let roots = || -> Result<Arc<RootCertStore>, WebConfigError> {
        let Some(ca) = &client_ca else {
            return Err(reader.error(
                f("client_ca_file"),
                format!("required with client_auth_type {auth_type}"),
            ));
        };
        let mut store = RootCertStore::empty();
        for c in certificates(reader, &f("client_ca_file"), ca)? {
            store
                .add(c)
                .map_err(|e| reader.error(f("client_ca_file"), e))?;
        }
        Ok(Arc::new(store))
    };
    let verifier = match auth_type {
        "NoClientCert" => {
            if client_ca.is_some() {
                return Err(reader.error(
                    f("client_ca_file"),
                    "set without a client_auth_type that verifies certificates",
                ));
            }
            WebPkiClientVerifier::no_client_auth()
        }
        "RequireAndVerifyClientCert" | "VerifyClientCertIfGiven" => {
            let mut builder =
                WebPkiClientVerifier::builder_with_provider(roots()?, provider.clone());
            if auth_type == "VerifyClientCertIfGiven" {
                builder = builder.allow_unauthenticated();
            }
            builder
                .build()
                .map_err(|e| reader.error(f("client_ca_file"), e))?
        }
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(reader.error(
                f("client_auth_type"),
                format!("{auth_type} accepts certificates without verifying them and is not supported; use RequireAndVerifyClientCert or VerifyClientCertIfGiven"),
            ))
        }
        other => {
            return Err(reader.error(
                f("client_auth_type"),
                format!("unknown `{other}`; use NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"),
            ))
        }
    };

    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| reader.error(f("cipher_suites"), e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| reader.error(f("key_file"), e))?;
    // Go's default (prefer_server_cipher_suites: true) is the server's order.
    config.ignore_client_order = raw.prefer_server_cipher_suites.unwrap_or(true);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(config))
}
