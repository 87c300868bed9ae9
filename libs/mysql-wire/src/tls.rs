//! TLS client configuration for connections to primaries (rustls with the `ring`
//! provider), following the MySQL client's `--ssl-mode` semantics (MySQL manual,
//! "Command Options for Encrypted Connections"):
//!
//! - `REQUIRED`: encrypt, accept any server certificate (no authentication);
//! - `VERIFY_CA`: the certificate must chain to `ssl-ca` (host name not checked);
//! - `VERIFY_IDENTITY`: as VERIFY_CA, and the host name must match the certificate.
//!
//! Without `ssl-ca`, VERIFY_CA and VERIFY_IDENTITY use the Mozilla root store.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;

use crate::url::{SourceUrl, TlsMode};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why no TLS client configuration could be built for a source: a definite stop of the
/// source until its `ssl-ca` or `ssl-mode` is fixed.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// `ssl-ca` cannot be read or parsed.
    #[error("{what} ssl-ca {}: {source}", .path.display())]
    Pem {
        /// "read" or "parse".
        what: &'static str,
        /// The CA file.
        path: std::path::PathBuf,
        /// The PEM reader's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// A certificate of `ssl-ca` is not usable as a root.
    #[error("add ssl-ca {}: {source}", .path.display())]
    Add {
        /// The CA file.
        path: std::path::PathBuf,
        /// rustls' error.
        #[source]
        source: TlsError,
    },
    /// `ssl-ca` holds no certificate.
    #[error("ssl-ca {} holds no certificate", .0.display())]
    Empty(std::path::PathBuf),
    /// `ssl-mode=DISABLED`.
    #[error("TLS is disabled for this source")]
    Disabled,
    /// rustls refused the protocol versions.
    #[error("{0}")]
    Rustls(#[from] TlsError),
    /// The certificate verifier could not be built from the roots.
    #[error("{0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
}

fn roots(url: &SourceUrl) -> Result<RootCertStore, TlsConfigError> {
    let mut store = RootCertStore::empty();
    match &url.ssl_ca {
        Some(path) => {
            let pem = |what: &'static str| {
                move |source| TlsConfigError::Pem {
                    what,
                    path: path.clone(),
                    source,
                }
            };
            let certs = CertificateDer::pem_file_iter(path).map_err(pem("read"))?;
            for c in certs {
                let c = c.map_err(pem("parse"))?;
                store.add(c).map_err(|source| TlsConfigError::Add {
                    path: path.clone(),
                    source,
                })?;
            }
            if store.is_empty() {
                return Err(TlsConfigError::Empty(path.clone()));
            }
        }
        None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(store)
}

/// Builds the rustls client configuration for `url.tls`. Errors: [`TlsConfigError`]
/// (bad CA file, unusable mode), for the operator.
pub fn client_config(url: &SourceUrl) -> Result<ClientConfig, TlsConfigError> {
    let builder =
        ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
    let config = match url.tls {
        TlsMode::Disabled => return Err(TlsConfigError::Disabled),
        TlsMode::Preferred | TlsMode::Required => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider())))
            .with_no_client_auth(),
        TlsMode::VerifyCa => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(url)?), provider())
                    .build()?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(inner)))
                .with_no_client_auth()
        }
        TlsMode::VerifyIdentity => builder
            .with_root_certificates(roots(url)?)
            .with_no_client_auth(),
    };
    Ok(config)
}

/// `ssl-mode=REQUIRED`: encryption without authentication of the server.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls12_signature(
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
    ) -> Result<HandshakeSignatureValid, TlsError> {
        verify_tls13_signature(
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

/// `ssl-mode=VERIFY_CA`: the chain must verify; a host-name mismatch is tolerated.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(TlsError::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(TlsError::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        self.0.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Why a listener's certificate and key cannot be used (each names its file).
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    /// The certificate file cannot be read or holds a bad PEM block.
    #[error("certificate {path}: {source}")]
    Certificate {
        /// The file.
        path: std::path::PathBuf,
        /// The PEM reader's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(std::path::PathBuf),
    /// The key file cannot be read or holds no usable private key.
    #[error("private key {path}: {source}")]
    Key {
        /// The file.
        path: std::path::PathBuf,
        /// The PEM reader's error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// rustls refused the pair (the key does not match, an unsupported algorithm).
    #[error("certificate {cert} and key {key} do not form a usable pair: {source}")]
    Pair {
        /// The certificate file.
        cert: std::path::PathBuf,
        /// The key file.
        key: std::path::PathBuf,
        /// rustls' error.
        #[source]
        source: TlsError,
    },
}

/// A server's certificate chain and key, loaded from PEM files for a listener (the HTTP
/// API, the fake primary).
///
/// `cert` holds the leaf first, then intermediates; `key` one PKCS#8, PKCS#1 or SEC1
/// private key. TLS 1.2 and 1.3 with rustls' safe defaults; no client certificates.
///
/// # Errors
///
/// [`ServerTlsError`], naming the file: the caller (config validation) refuses to start.
pub fn server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>, ServerTlsError> {
    let bad_cert = |source| ServerTlsError::Certificate {
        path: cert.to_owned(),
        source,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(bad_cert)?
        .collect::<Result<_, _>>()
        .map_err(bad_cert)?;
    if chain.is_empty() {
        return Err(ServerTlsError::NoCertificate(cert.to_owned()));
    }
    let key_der = rustls::pki_types::PrivateKeyDer::from_pem_file(key).map_err(|source| {
        ServerTlsError::Key {
            path: key.to_owned(),
            source,
        }
    })?;
    let pair = |source| ServerTlsError::Pair {
        cert: cert.to_owned(),
        key: key.to_owned(),
        source,
    };
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(pair)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(pair)?;
    Ok(Arc::new(config))
}
