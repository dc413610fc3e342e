//! Mutual TLS for the Falco intake (rustls, ring).
//!
//! The server asks every client for a certificate and checks it against the configured CA
//! (`--client-ca`). The chain check is made once the handshake is done, in the HTTP layer
//! ([`IntakeTls::authenticate`]), not inside it: a client without a certificate, or with one
//! from another CA, then gets an HTTP 401/403 it can read and the refusal is audited, instead
//! of a bare TLS alert. The handshake itself still verifies the client's signature with the
//! presented certificate (proof that the client holds its key), and nothing of a request is
//! read before [`IntakeTls::authenticate`] has accepted the peer.

use std::{fmt, path::PathBuf, sync::Arc};

use anyhow::{Context, Result, bail};
use hyper::StatusCode;
use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};

/// The PEM files of `guard respond --tls-cert/--tls-key/--client-ca`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
}

/// Checks the client's signature during the handshake; its chain afterwards (see the module
/// comment). Never used without [`IntakeTls::authenticate`].
#[derive(Debug)]
struct DeferredChain {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredChain {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    /// No CA hints: a client then sends whatever certificate it has, and one of another CA
    /// gets a readable 403 instead of silently sending none.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The server configuration and the CA check of the intake.
pub struct IntakeTls {
    pub config: Arc<ServerConfig>,
    chain: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for IntakeTls {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("IntakeTls")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &PathBuf, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let v: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading the {what} {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing the {what} {}", path.display()))?;
    if v.is_empty() {
        bail!("no certificate in the {what} {}", path.display());
    }
    Ok(v)
}

impl IntakeTls {
    pub fn load(files: &TlsFiles) -> Result<Self> {
        let chain_pem = certs(&files.cert, "server certificate (--tls-cert)")?;
        let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
            format!(
                "reading the private key (--tls-key) {}",
                files.key.display()
            )
        })?;
        let mut roots = RootCertStore::empty();
        for c in certs(&files.client_ca, "client CA (--client-ca)")? {
            roots
                .add(c)
                .with_context(|| format!("client CA {}", files.client_ca.display()))?;
        }
        let chain = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .context("building the client certificate verifier")?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(Arc::new(DeferredChain {
                inner: chain.clone(),
            }))
            .with_single_cert(chain_pem, key)
            .context("the server certificate and key do not form a usable pair")?;
        Ok(Self {
            config: Arc::new(config),
            chain,
        })
    }

    /// The peer's certificate chain against the client CA: `Ok(sha256 of its certificate)`,
    /// or the status and reason to refuse with.
    pub fn authenticate(
        &self,
        peer: Option<&[CertificateDer<'_>]>,
    ) -> Result<String, (StatusCode, String)> {
        let Some((leaf, intermediates)) = peer.and_then(|c| c.split_first()) else {
            return Err((
                StatusCode::UNAUTHORIZED,
                "client certificate required (mutual TLS)".into(),
            ));
        };
        self.chain
            .verify_client_cert(leaf, intermediates, UnixTime::now())
            .map_err(|e| {
                (
                    StatusCode::FORBIDDEN,
                    format!("client certificate not accepted: {e}"),
                )
            })?;
        Ok(crate::audit::sha256_hex(leaf.as_ref()))
    }
}
