//! The certificate a webhook replica serves, and whether the webhook
//! configuration's `caBundle` verifies it, as the API server would.
//!
//! The chain is read from the replica itself when it can be reached (a TLS
//! handshake that accepts any certificate, only to see it), else from the
//! Secret the Deployment mounts. Verification is rustls' own WebPKI
//! verifier with the `caBundle` as the only roots and the Service's DNS
//! name `<service>.<namespace>.svc`, the name the API server dials.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts any certificate: the handshake is made to see the chain, which
/// [`verify`] then checks against the `caBundle`.
#[derive(Debug)]
struct SeeAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for SeeAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The chain `addr` serves to a client asking for `name`, within `timeout`.
pub async fn fetch_chain(
    addr: SocketAddr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let provider = provider();
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(SeeAny(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let (_, conn) = tls.get_ref();
        conn.peer_certificates()
            .map(|c| c.iter().map(|d| d.clone().into_owned()).collect())
            .ok_or_else(|| "no certificate served".to_string())
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| format!("no answer within {}s", timeout.as_secs()))?
}

/// The certificates of a PEM bundle (a `caBundle`, a Secret's `tls.crt`).
pub fn pem_chain(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("not PEM certificates: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate in it".into());
    }
    Ok(certs)
}

/// Whether `ca_bundle` (PEM) verifies `chain` for `dns_name` at `at`, as
/// the API server does when it calls the webhook; the error in words.
pub fn verify(
    ca_bundle: &[u8],
    chain: &[CertificateDer<'static>],
    dns_name: &str,
    at: UnixTime,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in pem_chain(ca_bundle).map_err(|e| format!("caBundle: {e}"))? {
        roots
            .add(ca)
            .map_err(|e| format!("caBundle: not a CA certificate: {e}"))?;
    }
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("caBundle: {e}"))?;
    let (leaf, rest) = chain
        .split_first()
        .ok_or_else(|| "no certificate served".to_string())?;
    let name = ServerName::try_from(dns_name.to_string()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(leaf, rest, &name, &[], at)
        .map(|_| ())
        .map_err(|e| match e {
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
                "the caBundle did not sign the served certificate".to_string()
            }
            rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature) => {
                "the caBundle did not sign the served certificate".to_string()
            }
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            | rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            ) => format!("the served certificate is not for {dns_name}"),
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
            | rustls::Error::InvalidCertificate(rustls::CertificateError::ExpiredContext {
                ..
            }) => "the served certificate has expired".to_string(),
            other => other.to_string(),
        })
}

/// The leaf's `notAfter`, as unix seconds.
pub fn not_after(leaf: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::Bundle;

    const NAME: &str = "otel-admission.otel-admission.svc";

    /// The caBundle that signed the pair verifies it for the Service's
    /// name; another CA does not; another name does not; past its end it
    /// is expired.
    #[test]
    fn the_ca_bundle_verifies_as_the_api_server_would() {
        let names = vec![NAME.to_string()];
        let a = Bundle::generate(&names, 10).expect("bundle a");
        let b = Bundle::generate(&names, 10).expect("bundle b");
        let chain = pem_chain(a.cert_pem.as_bytes()).expect("chain");
        let now = UnixTime::now();
        assert_eq!(verify(a.ca_cert_pem.as_bytes(), &chain, NAME, now), Ok(()));
        assert_eq!(
            verify(b.ca_cert_pem.as_bytes(), &chain, NAME, now),
            Err("the caBundle did not sign the served certificate".into())
        );
        assert_eq!(
            verify(a.ca_cert_pem.as_bytes(), &chain, "other.ns.svc", now),
            Err("the served certificate is not for other.ns.svc".into())
        );
        let later = UnixTime::since_unix_epoch(Duration::from_secs(
            u64::try_from(not_after(&chain[0]).expect("not after")).expect("positive") + 60,
        ));
        assert_eq!(
            verify(a.ca_cert_pem.as_bytes(), &chain, NAME, later),
            Err("the served certificate has expired".into())
        );
        assert!(verify(b"garbage", &chain, NAME, now).is_err());
    }
}
