//! Development and bootstrap certificates (rcgen): a CA and a serving pair.
//!
//! Used by `otel-admission certs`, by `serve` when no certificate is given,
//! and by the tests, so all three exercise the same code.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// DNS names of the in-cluster Service, used when none are given.
pub const DEFAULT_DNS_NAMES: &[&str] = &[
    "otel-admission.otel-admission.svc",
    "otel-admission.otel-admission.svc.cluster.local",
];

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--dns {0:?} is not a valid DNS name or IP address")]
    BadName(String),
}

/// PEM-encoded CA and serving pair.
#[derive(Clone, Debug)]
pub struct Bundle {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Bundle {
    /// Generates a CA and a serving certificate for `names` (DNS names or IPs).
    pub fn generate(names: &[String], valid_days: i64) -> Result<Self, CertsError> {
        if let Some(bad) = names.iter().find(|n| !valid_name(n)) {
            return Err(CertsError::BadName(bad.clone()));
        }
        let now = OffsetDateTime::now_utc();
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = dn("otel-admission development CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params.not_before = now - Duration::minutes(5);
        ca_params.not_after = now + Duration::days(valid_days.max(1) + 1);
        let ca_key = KeyPair::generate()?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| match e {
            rcgen::Error::InvalidAsn1String(_) | rcgen::Error::InvalidIpAddressOctetLength(_) => {
                CertsError::BadName(names.join(","))
            }
            other => CertsError::Generate(other),
        })?;
        params.distinguished_name = dn(names.first().map_or("otel-admission", String::as_str));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(valid_days.max(1));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;
        Ok(Self {
            ca_cert_pem: ca.pem(),
            ca_key_pem,
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Base64 of the CA PEM: the `caBundle` of a webhook configuration.
    pub fn ca_bundle(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.ca_cert_pem)
    }

    /// A kustomize JSON 6902 patch setting the caBundle of a webhook
    /// configuration's first webhook (the dev overlay applies it to both).
    pub fn cabundle_patch(&self) -> String {
        format!(
            "# Written by `otel-admission certs`.\n- op: add\n  path: /webhooks/0/clientConfig/caBundle\n  value: {}\n",
            self.ca_bundle()
        )
    }

    /// Writes `ca.crt`, `ca.key`, `tls.crt`, `tls.key` (keys 0600) and
    /// `cabundle-patch.yaml` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<(), CertsError> {
        std::fs::create_dir_all(dir).map_err(|source| CertsError::Write {
            path: dir.to_owned(),
            source,
        })?;
        write_file(&dir.join("ca.crt"), &self.ca_cert_pem, false)?;
        write_file(&dir.join("ca.key"), &self.ca_key_pem, true)?;
        write_file(&dir.join("tls.crt"), &self.cert_pem, false)?;
        write_file(&dir.join("tls.key"), &self.key_pem, true)?;
        write_file(
            &dir.join("cabundle-patch.yaml"),
            &self.cabundle_patch(),
            false,
        )?;
        Ok(())
    }
}

/// An IP address, or a DNS name of letters, digits and hyphens (a leading `*.` allowed).
fn valid_name(n: &str) -> bool {
    if n.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = n.strip_prefix("*.").unwrap_or(n);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn.push(DnType::OrganizationName, "otel-admission");
    dn
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), CertsError> {
    let err = |source| CertsError::Write {
        path: path.to_owned(),
        source,
    };
    // Write then rename, so a watcher never sees a half-written file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(err)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_a_chain_rustls_accepts() {
        let b = Bundle::generate(&["localhost".into(), "127.0.0.1".into()], 30).expect("gen");
        let info = crate::server::tls::parse_pair(b.cert_pem.as_bytes(), b.key_pem.as_bytes())
            .expect("pair loads");
        let days = (info.not_after - OffsetDateTime::now_utc().unix_timestamp()) / 86_400;
        assert!((29..=30).contains(&days), "{days}");
        assert!(b.ca_bundle().len() > 100);
    }

    #[test]
    fn bad_name_is_reported() {
        let err = Bundle::generate(&["bad name!".into()], 1).expect_err("bad");
        assert!(err.to_string().contains("--dns"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn keys_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        Bundle::generate(&["localhost".into()], 1)
            .expect("gen")
            .write(dir.path())
            .expect("write");
        let mode = std::fs::metadata(dir.path().join("tls.key"))
            .expect("md")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(dir.path().join("ca.crt").exists());
    }
}
