//! The TLS configuration every adapter's HTTP client shares, with the system's root
//! certificates loaded on the first TLS handshake rather than when a client is built.
//!
//! Reading and parsing the system's certificate store takes milliseconds (tens of files,
//! hundreds of certificates), and reqwest does it for every client it builds. An adapter
//! is built at every `load_model().build()` and every reload, often for a plain-HTTP
//! endpoint (a local server) that never needs a certificate. Here the store is read once
//! per process, when the first HTTPS connection verifies a server, and kept: a change to
//! the system's store is seen by the next process.
//!
//! Everything else is what reqwest configures by default: the process's rustls crypto
//! provider, TLS 1.2 and 1.3, SNI, and ALPN offering HTTP/2 and HTTP/1.1. Verification
//! itself is `rustls-platform-verifier`'s, as reqwest's default is.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

/// The shared client configuration (cheap to clone: its parts are reference-counted).
pub(crate) fn client_config() -> Result<ClientConfig, rustls::Error> {
    static CONFIG: OnceLock<Result<ClientConfig, rustls::Error>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // reqwest is built with `rustls-no-provider`: pick ring once per process. A
            // second install fails harmlessly (a provider is already there).
            let _ = rustls::crypto::ring::default_provider().install_default();
            let provider = CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
            let mut config = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LazyVerifier {
                    provider,
                    platform: OnceLock::new(),
                }))
                .with_no_client_auth();
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            Ok(config)
        })
        .clone()
}

/// The platform verifier, created (reading the certificate store) on the first
/// certificate to verify. Handshake signatures need no certificate store: they are
/// checked with the crypto provider's algorithms, as the platform verifier checks them.
#[derive(Debug)]
struct LazyVerifier {
    provider: Arc<CryptoProvider>,
    platform: OnceLock<Result<Arc<rustls_platform_verifier::Verifier>, rustls::Error>>,
}

impl LazyVerifier {
    fn platform(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.platform
            .get_or_init(|| rustls_platform_verifier::Verifier::new(self.provider.clone()).map(Arc::new))
            .as_deref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.platform()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_config_offers_h2_and_defers_the_certificate_store() {
        let config = client_config().expect("TLS config");
        assert_eq!(config.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(config.enable_sni);
        let verifier = LazyVerifier {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            platform: OnceLock::new(),
        };
        // Building a client hello asks for the schemes: no certificate store is read.
        assert!(!verifier.supported_verify_schemes().is_empty());
        assert!(verifier.platform.get().is_none());
    }
}
