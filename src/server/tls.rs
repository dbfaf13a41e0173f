//! TLS: rustls with hot certificate reload.
//!
//! The serving pair lives behind an [`ArcSwap`] read by a rustls
//! [`ResolvesServerCert`], so a reload swaps it for new handshakes without
//! touching open connections. A pair that fails to parse, does not match its
//! key, or has expired is rejected and the old one keeps serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: no PEM certificate found")]
    NoCertificate { what: String },
    #[error("{what}: no PEM private key found: {reason}")]
    NoKey { what: String, reason: String },
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("{what}: certificate expired at unix time {not_after}")]
    Expired { what: String, not_after: i64 },
    #[error(
        "{what}: certificate is not valid before unix time {not_before} (more than {skew}s ahead of this clock)"
    )]
    NotYetValid {
        what: String,
        not_before: i64,
        skew: i64,
    },
    #[error("cannot build TLS config: {0}")]
    Config(#[from] rustls::Error),
}

/// How far in the future a certificate's `notBefore` may lie (clock skew).
pub const CLOCK_SKEW_SECS: i64 = 5 * 60;

/// A parsed, consistent serving pair.
#[derive(Debug)]
pub struct Pair {
    pub key: Arc<CertifiedKey>,
    /// Expiry of the leaf certificate, unix seconds.
    pub not_after: i64,
}

/// Parses PEM cert chain and key, checking they belong together and are current.
pub fn parse_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<Pair, TlsError> {
    parse_pair_named(cert_pem, key_pem, "--tls-cert", "--tls-key")
}

fn parse_pair_named(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_what: &str,
    key_what: &str,
) -> Result<Pair, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Invalid {
            what: cert_what.into(),
            reason: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            what: cert_what.into(),
        });
    };
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey {
        what: key_what.into(),
        reason: e.to_string(),
    })?;
    let (_, x509) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| TlsError::Invalid {
            what: cert_what.into(),
            reason: format!("not an X.509 certificate: {e}"),
        })?;
    let not_after = x509.validity().not_after.timestamp();
    let not_before = x509.validity().not_before.timestamp();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if not_after <= now {
        return Err(TlsError::Expired {
            what: cert_what.into(),
            not_after,
        });
    }
    // Every handshake would fail with a certificate from the future; a few
    // minutes of skew between the issuer's clock and ours are normal.
    if not_before > now + CLOCK_SKEW_SECS {
        return Err(TlsError::NotYetValid {
            what: cert_what.into(),
            not_before,
            skew: CLOCK_SKEW_SECS,
        });
    }
    let certified =
        CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Invalid {
            what: format!("{cert_what} and {key_what}"),
            reason: e.to_string(),
        })?;
    Ok(Pair {
        key: Arc::new(certified),
        not_after,
    })
}

/// The one crypto provider we use. Passed explicitly so tests and the binary
/// need no process-wide default.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// TLS 1.2 and 1.3 only, ALPN h2 and http/1.1, certificate from `resolver`.
pub fn server_config(
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// The serving certificate, reloadable from its files.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// Bytes of the last pair we tried, good or bad, so an unchanged file is
    /// neither reparsed nor re-reported.
    last_seen: Mutex<(Vec<u8>, Vec<u8>)>,
    metrics: Arc<Metrics>,
}

/// Whether a reload swapped the certificate.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    Unchanged,
    Swapped { not_after: i64 },
}

// === impl CertStore ===

impl CertStore {
    /// Loads the initial pair; failure here stops start-up.
    pub fn load(cert: &Path, key: &Path, metrics: Arc<Metrics>) -> Result<Self, TlsError> {
        let (cert_pem, key_pem) = read_pair(cert, key)?;
        let pair = parse_pair_named(
            &cert_pem,
            &key_pem,
            &cert.display().to_string(),
            &key.display().to_string(),
        )?;
        metrics.tls_expiry.set(pair.not_after);
        Ok(Self {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            current: ArcSwap::new(pair.key),
            last_seen: Mutex::new((cert_pem, key_pem)),
            metrics,
        })
    }

    /// Directories to watch. The kubelet swaps a Secret volume by renaming
    /// `..data`, so we watch the directories holding the paths, not the files.
    pub fn watch_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = [&self.cert_path, &self.key_path]
            .iter()
            .map(|p| parent_dir(p))
            .collect();
        dirs.dedup();
        dirs
    }

    /// Re-reads the files; swaps only when both parse and match.
    pub fn reload(&self) -> Result<Reloaded, TlsError> {
        let (cert_pem, key_pem) = read_pair(&self.cert_path, &self.key_path)?;
        {
            let mut last = self.last_seen.lock().unwrap_or_else(|p| p.into_inner());
            if last.0 == cert_pem && last.1 == key_pem {
                return Ok(Reloaded::Unchanged);
            }
            *last = (cert_pem.clone(), key_pem.clone());
        }
        let result = parse_pair_named(
            &cert_pem,
            &key_pem,
            &self.cert_path.display().to_string(),
            &self.key_path.display().to_string(),
        );
        match result {
            Ok(pair) => {
                self.current.store(pair.key);
                self.metrics.tls_expiry.set(pair.not_after);
                Ok(Reloaded::Swapped {
                    not_after: pair.not_after,
                })
            }
            Err(e) => {
                self.metrics.tls_reload_errors.inc();
                Err(e)
            }
        }
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Reads both files from one snapshot. The kubelet swaps a Secret volume by
/// renaming the `..data` symlink and then removes the old directory, so two
/// plain reads may straddle a swap (a cert from the new pair, a key from the
/// old) or meet a link whose target just vanished. Both paths are resolved
/// before and after reading; if either moved, or a file vanished, the read
/// is retried rather than reported.
fn read_pair(cert: &Path, key: &Path) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let resolve = |p: &Path| std::fs::canonicalize(p).ok();
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_owned(),
            source,
        })
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let before = (resolve(cert), resolve(key));
        let result = read(cert).and_then(|c| read(key).map(|k| (c, k)));
        let after = (resolve(cert), resolve(key));
        let moved = before != after;
        let vanished = matches!(&result, Err(TlsError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound);
        if (moved || vanished) && attempt < 5 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            continue;
        }
        return result;
    }
}

pub(crate) fn parent_dir(p: &Path) -> PathBuf {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Bundle;

    #[test]
    fn mismatched_key_is_rejected() {
        let a = Bundle::generate(&["localhost".into()], 1).expect("a");
        let b = Bundle::generate(&["localhost".into()], 1).expect("b");
        let err = parse_pair(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).expect_err("mismatch");
        assert!(
            err.to_string().contains("--tls-cert and --tls-key"),
            "{err}"
        );
    }

    #[test]
    fn garbage_is_rejected_with_the_flag_name() {
        let a = Bundle::generate(&["localhost".into()], 1).expect("a");
        let err = parse_pair(b"nonsense", a.key_pem.as_bytes()).expect_err("no cert");
        assert!(err.to_string().starts_with("--tls-cert"), "{err}");
        let err = parse_pair(a.cert_pem.as_bytes(), b"nonsense").expect_err("no key");
        assert!(err.to_string().starts_with("--tls-key"), "{err}");
    }

    #[test]
    fn a_certificate_from_the_future_is_refused_and_skew_is_allowed() {
        let mk = |offset: time::Duration| {
            let key = rcgen::KeyPair::generate().expect("key");
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("p");
            params.not_before = time::OffsetDateTime::now_utc() + offset;
            params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(30);
            let cert = params.self_signed(&key).expect("cert");
            (cert.pem(), key.serialize_pem())
        };
        let (c, k) = mk(time::Duration::hours(1));
        let err = parse_pair(c.as_bytes(), k.as_bytes()).expect_err("future");
        assert!(matches!(err, TlsError::NotYetValid { .. }), "{err}");
        assert!(err.to_string().contains("not valid before"), "{err}");
        let (c, k) = mk(time::Duration::minutes(2));
        parse_pair(c.as_bytes(), k.as_bytes()).expect("two minutes of skew are fine");
    }

    #[test]
    fn reload_swaps_good_and_keeps_old_on_bad() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = Bundle::generate(&["localhost".into()], 1).expect("a");
        a.write(dir.path()).expect("write");
        let metrics = Arc::new(Metrics::new());
        let store = CertStore::load(
            &dir.path().join("tls.crt"),
            &dir.path().join("tls.key"),
            metrics.clone(),
        )
        .expect("load");
        let first = store.current();
        assert_eq!(store.reload().expect("same"), Reloaded::Unchanged);

        std::fs::write(dir.path().join("tls.crt"), "broken").expect("w");
        assert!(store.reload().is_err());
        assert!(Arc::ptr_eq(&first, &store.current()), "old pair kept");
        assert_eq!(metrics.tls_reload_errors.get(), 1);
        // The same broken bytes are not reported twice.
        assert_eq!(store.reload().expect("same"), Reloaded::Unchanged);

        let b = Bundle::generate(&["localhost".into()], 10).expect("b");
        b.write(dir.path()).expect("write");
        assert!(matches!(
            store.reload().expect("new"),
            Reloaded::Swapped { .. }
        ));
        assert!(!Arc::ptr_eq(&first, &store.current()));
    }
}
