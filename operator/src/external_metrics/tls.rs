//! Serving the API over TLS: the server certificate (given or self-signed) and, with the
//! front-proxy CA, accepting only the apiserver as a client.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tracing::{debug, info};

use super::{GROUP, MetricSource, VERSION, router};

/// TLS for the server: a certificate (PEM files, e.g. from a Secret) or a self-signed one
/// made at start for `dns_names`, and optionally the CA that must have signed the client's.
pub struct TlsSettings {
    pub cert_and_key: Option<(Vec<u8>, Vec<u8>)>,
    pub dns_names: Vec<String>,
    pub client_ca_pem: Option<Vec<u8>>,
}

pub fn tls_config(s: &TlsSettings) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (certs, key): (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) = match &s.cert_and_key
    {
        Some((cert, key)) => (
            CertificateDer::pem_slice_iter(cert).collect::<Result<_, _>>()?,
            PrivateKeyDer::from_pem_slice(key)?,
        ),
        None => {
            let ck = rcgen::generate_simple_self_signed(s.dns_names.clone())?;
            (
                vec![ck.cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der())),
            )
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match &s.client_ca_pem {
        Some(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(pem) {
                roots.add(c?)?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Serve the API on `addr` until the process ends.
pub async fn serve(
    addr: SocketAddr,
    tls: rustls::ServerConfig,
    source: Arc<dyn MetricSource>,
) -> anyhow::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let app = router(source);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    info!(%addr, "serving {GROUP}/{VERSION}");
    loop {
        let (tcp, peer) = listener.accept().await?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => return debug!(%peer, error = %e, "TLS handshake refused"),
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await
            {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_tls_config_builds() {
        let s = TlsSettings {
            cert_and_key: None,
            dns_names: vec!["sluice-operator.sluice-system.svc".into()],
            client_ca_pem: None,
        };
        let c = tls_config(&s).unwrap();
        assert_eq!(c.alpn_protocols[0], b"h2");
    }
}
