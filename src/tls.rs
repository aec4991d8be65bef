//! TLS to PostgreSQL as libpq's `sslmode` and `sslrootcert` ask for it, through rustls
//! (tokio-postgres-rustls): nothing to build against or ship besides the binary, unlike
//! OpenSSL.
//!
//! rust-postgres reads `sslmode` as disable, prefer or require and leaves the checking
//! of certificates to the connector; libpq's `verify-ca`, `verify-full` and
//! `sslrootcert` are taken out of the URL here (rust-postgres would refuse them) and
//! decide how the connector checks the server's certificate, as libpq does:
//! - disable, prefer (the default), require: encrypted if the server agrees (required
//!   with require), the certificate not checked;
//! - verify-ca: the certificate must chain to one in `sslrootcert`;
//! - verify-full: that, and it must name the host connected to.
//!
//! `sslrootcert` defaults to `~/.postgresql/root.crt`, as in libpq.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;

pub use tokio_postgres_rustls::MakeRustlsConnect as Tls;

/// How the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Not at all (sslmode disable, prefer or require).
    Nothing,
    /// Its chain, up to a root certificate (verify-ca).
    Chain,
    /// Its chain and its name (verify-full).
    ChainAndName,
}

/// What a connection URL asks of TLS beyond what rust-postgres reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    pub check: Check,
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode=verify-ca|verify-full` (made `require`) and `sslrootcert` out of a
/// URL in either of libpq's forms; returns the URL for rust-postgres and what remains
/// for the connector.
pub fn split(url: &str) -> Result<(String, Wanted), String> {
    let mut wanted = Wanted {
        check: Check::Nothing,
        root_cert: None,
    };
    let mut take = |key: &str, value: &str| -> Result<Option<String>, String> {
        match (key, value) {
            ("sslmode", "verify-ca") => wanted.check = Check::Chain,
            ("sslmode", "verify-full") => wanted.check = Check::ChainAndName,
            ("sslrootcert", path) => wanted.root_cert = Some(PathBuf::from(path)),
            _ => return Ok(None),
        }
        Ok(Some(if key == "sslmode" {
            "require".into()
        } else {
            String::new()
        }))
    };
    let rewritten = if let Some((base, query)) = url
        .split_once('?')
        .filter(|_| url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_decode(value)?;
            match take(key, &decoded)? {
                None => kept.push(pair.to_string()),
                Some(value) if !value.is_empty() => kept.push(format!("{key}={value}")),
                Some(_) => {}
            }
        }
        if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        }
    } else if url.contains("://") {
        url.to_string()
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            if key.starts_with("ssl") && value.starts_with('\'') {
                return Err(format!("{key}: write the value without quotes"));
            }
            match take(key, value)? {
                None => kept.push(word.to_string()),
                Some(value) if !value.is_empty() => kept.push(format!("{key}={value}")),
                Some(_) => {}
            }
        }
        kept.join(" ")
    };
    Ok((rewritten, wanted))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding in {text:?}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8"))
}

/// The connector for what `wanted` asks.
pub fn connector(wanted: &Wanted) -> Result<Tls, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let verifier: Arc<dyn ServerCertVerifier> = match wanted.check {
        Check::Nothing => Arc::new(Unchecked { provider }),
        check => {
            let roots = root_certificates(wanted.root_cert.as_ref())?;
            let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("TLS: {e}"))?;
            Arc::new(Checked {
                chain,
                name: check == Check::ChainAndName,
            })
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Tls::new(config))
}

fn root_certificates(path: Option<&PathBuf>) -> Result<rustls::RootCertStore, String> {
    let path = match path {
        Some(path) => path.clone(),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".postgresql/root.crt"))
            .ok_or("sslmode verify-ca or verify-full needs sslrootcert")?,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(&path)
        .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
    for certificate in certificates {
        let certificate =
            certificate.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
        roots
            .add(certificate)
            .map_err(|e| format!("bad root certificate in {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("no certificate in sslrootcert {}", path.display()));
    }
    Ok(roots)
}

/// Accepts any certificate, as libpq does below verify-ca: the connection is encrypted
/// but not authenticated. The handshake's signatures are still checked.
#[derive(Debug)]
struct Unchecked {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Unchecked {
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
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The chain to a root of `sslrootcert`, and with verify-full the host's name too.
#[derive(Debug)]
struct Checked {
    chain: Arc<WebPkiServerVerifier>,
    name: bool,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.chain.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match verdict {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chain.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chain.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_and_root_certificates_leave_the_url_for_the_connector() {
        let (url, wanted) = split(
            "postgres://u@db:5432/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=2",
        )
        .expect("a URL");
        assert_eq!(
            url,
            "postgres://u@db:5432/x?sslmode=require&connect_timeout=2"
        );
        assert_eq!(wanted.check, Check::ChainAndName);
        assert_eq!(wanted.root_cert, Some(PathBuf::from("/etc/ca.pem")));

        let (url, wanted) =
            split("host=db user=u sslmode=verify-ca sslrootcert=/ca.pem").expect("key=value");
        assert_eq!(url, "host=db user=u sslmode=require");
        assert_eq!(wanted.check, Check::Chain);

        let plain = "postgres://u@db/x?sslmode=require";
        assert_eq!(split(plain).expect("a URL").0, plain);
        assert_eq!(split(plain).expect("a URL").1.check, Check::Nothing);
        let (url, _) = split("postgres://u@db/x?sslrootcert=%2Fca.pem").expect("a URL");
        assert_eq!(url, "postgres://u@db/x");
    }
}
