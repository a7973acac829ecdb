//! Optional TLS on the data-plane listener, with optional client certificates (mutual TLS,
//! RFC 8705; `token-security.md` G-12: rustls 0.23 with the aws-lc-rs provider).
//!
//! * [`server_config`] reads the PEM files: the server certificate chain, its private key and,
//!   optionally, a client CA bundle. With a client CA, certificates are *requested* but not
//!   required (clients without one still connect; only certificate-bound credentials need
//!   one) and a presented certificate must chain to the bundle (rustls
//!   `WebPkiClientVerifier`). ALPN offers `h2` and `http/1.1`.
//! * [`TlsListener`] is an `axum::serve` listener: a background task accepts TCP connections
//!   and runs each handshake in its own task (bounded by [`HANDSHAKE_TIMEOUT`] and
//!   [`MAX_PENDING_HANDSHAKES`]), so a slow or silent client never holds up the others. Each
//!   connection's [`TlsPeer`] carries the `x5t#S256` of the client certificate; serve the router
//!   with `into_make_service_with_connect_info::<TlsPeer>()` and [`crate::mtls`] turns it into
//!   the request's `ConnectInfo<SocketAddr>` and [`crate::mtls::ClientCertificate`].
//!
//! Failed handshakes are logged at debug level with the peer address and the rustls error kind
//! only; key material never reaches a log.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::mtls::{ClientCertificate, TlsPeer};

/// Longest time a client may take to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the kernel backlog.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// The PEM files of the data-plane TLS settings (`[tls]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Server certificate chain, leaf first (PEM `CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// The leaf's private key (PEM PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates client certificates must chain to; `None`: client certificates are not
    /// requested.
    pub client_ca: Option<PathBuf>,
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let iter = CertificateDer::pem_file_iter(path).map_err(|e| format!("{what} {}: cannot read: {e}", path.display()))?;
    let certs = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no PEM CERTIFICATE block found", path.display()));
    }
    Ok(certs)
}

/// The RFC 8705 `x5t#S256` thumbprint of the first certificate in a PEM file (for
/// `gatehouse keys create --mtls-cert`). Errors name the file.
pub fn x5t_of_pem_file(path: &Path) -> Result<String, String> {
    let certs = read_certs(path, "certificate")?;
    certs.first().map(|c| crate::mtls::x5t_s256(c.as_ref())).ok_or_else(|| format!("{}: no certificate", path.display()))
}

/// Builds the rustls server configuration from `files` (module doc).
///
/// Errors (one message naming the file, never key bytes): unreadable file, no certificate, no
/// or unsupported private key, key not matching the certificate, empty or invalid client CA.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, String> {
    let chain = read_certs(&files.cert, "tls.cert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("tls.key {}: no usable PEM private key: {e}", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca, "tls.client_ca")? {
                roots.add(cert).map_err(|e| format!("tls.client_ca {}: {e}", ca.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("tls.client_ca {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("tls.cert/tls.key: the key does not fit the certificate or is unsupported: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS data-plane listener for `axum::serve` (module doc). Dropping it stops accepting.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, TlsPeer)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsListener {
    /// Starts accepting on `tcp` with `config`. Errors: the socket's local address cannot be
    /// read.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        let task = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), tx));
        Ok(Self { accepted, local, task })
    }
}

async fn accept_loop(tcp: TcpListener, acceptor: TlsAcceptor, tx: mpsc::Sender<(TlsStream<TcpStream>, TlsPeer)>) {
    let permits = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, addr) = match tcp.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Like axum's own listener: connection errors are per connection; others
                // (e.g. too many open files) get a short pause.
                tracing::debug!(error = %e, "data-plane accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if tx.is_closed() {
            return;
        }
        let _ = stream.set_nodelay(true);
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(permit);
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %addr, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %addr, "TLS handshake timed out");
                    return;
                }
            };
            let client_cert =
                tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|leaf| ClientCertificate::from_der(leaf.as_ref()));
            let _ = tx.send((tls, TlsPeer { addr, client_cert })).await;
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(x) => x,
            // The accept task ended (it only does when this listener is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(TlsPeer { addr: self.local, client_cert: None })
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for TlsPeer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        stream.remote_addr().clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn server_config_checks_the_files() {
        let dir = std::env::temp_dir().join(format!("gatehouse-tls-unit-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_string()]).unwrap().self_signed(&key).unwrap();
        let other_key = KeyPair::generate().unwrap();
        let cert_path = write(&dir, "cert.pem", &cert.pem());
        let key_path = write(&dir, "key.pem", &key.serialize_pem());
        let files = |cert: &Path, key: &Path, ca: Option<&Path>| TlsFiles { cert: cert.into(), key: key.into(), client_ca: ca.map(Into::into) };
        // Good: with and without a client CA; ALPN offers h2 and HTTP/1.1.
        let ok = server_config(&files(&cert_path, &key_path, None)).unwrap();
        assert_eq!(ok.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        assert!(server_config(&files(&cert_path, &key_path, Some(&cert_path))).is_ok());
        assert_eq!(x5t_of_pem_file(&cert_path).unwrap(), crate::mtls::x5t_s256(cert.der()));
        // A key of another certificate, a missing key, an empty CA bundle: refused, naming the file.
        let wrong = write(&dir, "wrong.pem", &other_key.serialize_pem());
        let err = server_config(&files(&cert_path, &wrong, None)).unwrap_err();
        assert!(err.contains("does not fit"), "{err}");
        let empty = write(&dir, "empty.pem", "");
        let err = server_config(&files(&cert_path, &empty, None)).unwrap_err();
        assert!(err.starts_with("tls.key"), "{err}");
        let err = server_config(&files(&cert_path, &key_path, Some(&empty))).unwrap_err();
        assert!(err.starts_with("tls.client_ca") && err.contains("no PEM CERTIFICATE"), "{err}");
        // Error texts never carry key material.
        assert!(!err.contains("PRIVATE KEY"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
