//! TLS for tests: the names the test certificates are for, clients that
//! trust only the test CA, raw TLS streams, and reading the certificate a
//! server presents.

use std::sync::Arc;
use std::time::Duration;

use otel_admission::certs::Bundle;

/// The names the test certificates are issued for.
pub fn names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

/// An HTTPS client that trusts only `bundle`'s CA.
pub fn client_for(bundle: &Bundle) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(bundle.ca_cert_pem.as_bytes()).expect("ca"),
        )
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// A raw TLS stream to the server, for tests that need to misbehave.
pub async fn tls_connect(
    addr: std::net::SocketAddr,
    bundle: &Bundle,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    tls_connector(bundle, &[&rustls::version::TLS13, &rustls::version::TLS12])
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name"),
            stream,
        )
        .await
        .expect("tls handshake")
}

pub fn tls_connector(
    bundle: &Bundle,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(bundle.ca_cert_pem.as_bytes()).expect("ca der"))
        .expect("add root");
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

/// The leaf certificate the server presents right now, whoever signed it.
pub async fn served_cert(addr: std::net::SocketAddr) -> Vec<u8> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(InspectOnly(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    let (_, conn) = s.get_ref();
    conn.peer_certificates().expect("peer certs")[0].to_vec()
}

/// Accepts any certificate: only for reading which one is served.
#[derive(Debug)]
struct InspectOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for InspectOnly {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
