//! TLS for the connections backends open (PostgreSQL, and what else needs a verified
//! server): rustls on the ring provider, trusting the system's roots plus an optional CA
//! file, so a server with a private CA is reachable without trusting everything.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// A client config trusting the system's root certificates and those in `ca` (PEM).
pub fn client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    // Certificates that fail to load or parse are skipped: a server whose chain needs one
    // then fails with a certificate error naming it.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                format!(
                    "cannot read certificates from `{}`: {e}; give a PEM file of the server's CA (or its own certificate)",
                    path.display()
                )
            })?;
        if certs.is_empty() {
            return Err(format!(
                "`{}` holds no PEM certificate; give the server's CA certificate",
                path.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("`{}`: {e}", path.display()))?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("cannot set up TLS: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
