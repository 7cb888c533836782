//! TLS for every listener: rustls with the ring provider (chosen explicitly, never a process-wide
//! default), TLS 1.2 and 1.3 only, a PEM certificate chain and key from files, optionally client
//! certificates verified against a CA file, and reloading the files without a restart: new
//! handshakes use the new certificate, live connections keep theirs.

use parking_lot::RwLock;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
pub use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Where the PEM files are and how client certificates are treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert_chain: PathBuf,
    pub key: PathBuf,
    /// CA certificates that client certificates are verified against (none: no client certs).
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation lists for client certificates.
    pub crls: Vec<PathBuf>,
    /// With `client_ca`: refuse clients without a certificate.
    pub require_client_cert: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &std::path::Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

/// Builds the rustls configuration from the files.
pub fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert_chain)
        .map_err(|e| file_error(&files.cert_chain, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert_chain, e))?;
    if certs.is_empty() {
        return Err(file_error(&files.cert_chain, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS12, &rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(client_verifier(files, ca, provider)?),
    };
    builder.with_single_cert(certs, key).map_err(|e| TlsError::Config(e.to_string()))
}

fn client_verifier(
    files: &TlsFiles,
    ca: &std::path::Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, e))? {
        roots.add(cert.map_err(|e| file_error(ca, e))?).map_err(|e| file_error(ca, e))?;
    }
    let mut crls = Vec::new();
    for path in &files.crls {
        for crl in CertificateRevocationListDer::pem_file_iter(path).map_err(|e| file_error(path, e))? {
            crls.push(crl.map_err(|e| file_error(path, e))?);
        }
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).with_crls(crls);
    let builder = if files.require_client_cert { builder } else { builder.allow_unauthenticated() };
    builder.build().map_err(|e| TlsError::Config(e.to_string()))
}

/// The acceptor all TLS listeners share; `reload` swaps in freshly read files.
pub struct Reloadable {
    files: TlsFiles,
    acceptor: RwLock<TlsAcceptor>,
}

impl Reloadable {
    pub fn load(files: TlsFiles) -> Result<Arc<Reloadable>, TlsError> {
        let acceptor = TlsAcceptor::from(Arc::new(server_config(&files)?));
        Ok(Arc::new(Reloadable { files, acceptor: RwLock::new(acceptor) }))
    }

    /// Re-reads the files; on an error the current certificate stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = TlsAcceptor::from(Arc::new(server_config(&self.files)?));
        *self.acceptor.write() = fresh;
        Ok(())
    }

    pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S) -> std::io::Result<TlsStream<S>> {
        let acceptor = self.acceptor.read().clone();
        acceptor.accept(stream).await
    }
}
