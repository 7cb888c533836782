//! TLS for every listener: rustls with the ring provider (chosen explicitly, never a process-wide
//! default), TLS 1.2 and 1.3 only, a PEM certificate chain and key from files, optionally client
//! certificates verified against a CA file (with revocation lists), the user a verified client
//! certificate names (certificate login), and reloading the files without a restart: new
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
    /// Certificate login: which part of a verified client certificate names its user (none:
    /// certificates are not used to log in).
    pub cert_login: Option<CertLoginFrom>,
}

/// Which part of a client certificate is the user name (RabbitMQ's `ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertLoginFrom {
    /// The subject's (first) common name, CN.
    CommonName,
    /// The first DNS name among the subject alternative names.
    SanDns,
    /// The first e-mail address (rfc822Name) among the subject alternative names.
    SanEmail,
}

impl std::str::FromStr for CertLoginFrom {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "common_name" => Ok(CertLoginFrom::CommonName),
            "san_dns" => Ok(CertLoginFrom::SanDns),
            "san_email" => Ok(CertLoginFrom::SanEmail),
            other => Err(format!("unknown certificate login source '{other}' (common_name, san_dns or san_email)")),
        }
    }
}

/// The user name a DER certificate gives under `from`; `None` when it has no such field.
pub fn certificate_user(der: &[u8], from: CertLoginFrom) -> Option<String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = match from {
        CertLoginFrom::CommonName => cert.subject().iter_common_name().next()?.as_str().ok()?,
        CertLoginFrom::SanDns | CertLoginFrom::SanEmail => {
            let san = cert.subject_alternative_name().ok()??;
            san.value.general_names.iter().find_map(|n| match (from, n) {
                (CertLoginFrom::SanDns, GeneralName::DNSName(s)) => Some(*s),
                (CertLoginFrom::SanEmail, GeneralName::RFC822Name(s)) => Some(*s),
                _ => None,
            })?
        }
    };
    (!name.is_empty()).then(|| name.to_string())
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

    /// With certificate login on, the user the connection's verified client certificate names
    /// (rustls only keeps a certificate that passed verification).
    pub fn certificate_user<S>(&self, stream: &TlsStream<S>) -> Option<Arc<str>> {
        let from = self.files.cert_login?;
        let leaf = stream.get_ref().1.peer_certificates()?.first()?;
        certificate_user(leaf, from).map(Arc::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Self-signed test certificates (openssl req -x509): subject O=Junction tests, CN=unit-user,
    /// SAN DNS:unit.example and email:unit@example.com; and one with no CN and no SAN.
    const WITH_SAN: &str = include_str!("../testdata/with-san.pem");
    const NO_NAMES: &str = include_str!("../testdata/no-san.pem");

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn the_user_name_comes_from_the_chosen_field() {
        let cert = der(WITH_SAN);
        assert_eq!(certificate_user(&cert, CertLoginFrom::CommonName).as_deref(), Some("unit-user"));
        assert_eq!(certificate_user(&cert, CertLoginFrom::SanDns).as_deref(), Some("unit.example"));
        assert_eq!(certificate_user(&cert, CertLoginFrom::SanEmail).as_deref(), Some("unit@example.com"));
    }

    #[test]
    fn a_certificate_without_the_field_names_nobody() {
        let cert = der(NO_NAMES);
        for from in [CertLoginFrom::CommonName, CertLoginFrom::SanDns, CertLoginFrom::SanEmail] {
            assert_eq!(certificate_user(&cert, from), None);
        }
        assert_eq!(certificate_user(b"not a certificate", CertLoginFrom::CommonName), None);
    }

    #[test]
    fn login_sources_parse_by_their_configuration_names() {
        assert_eq!("common_name".parse(), Ok(CertLoginFrom::CommonName));
        assert_eq!("san_dns".parse(), Ok(CertLoginFrom::SanDns));
        assert_eq!("san_email".parse(), Ok(CertLoginFrom::SanEmail));
        assert!("distinguished_name".parse::<CertLoginFrom>().is_err());
    }
}
