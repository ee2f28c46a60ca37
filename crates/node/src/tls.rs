//! TLS for the gRPC port (rustls, through tonic), and the one place where
//! every client of a node builds its connection.
//!
//! With `[tls]` in the config, a node serves its port with the `cert`/`key`
//! pair only. If the config also names a `ca`, the node demands a client
//! certificate signed by that CA from every caller (mutual TLS): peers
//! present their own node certificate, clients a certificate of their own
//! (a client's config file names it as its `cert`/`key`). Callers verify
//! the node's certificate against the `ca`, or against the system's trusted
//! roots when there is none.
//!
//! The files are PEM, read (and checked to hold a certificate or a key)
//! once, when a [`Dialer`] or the server's [`server_tls`] is built, so a
//! wrong path or an empty file stops a node at startup with the field named
//! instead of failing each connection later. Relative paths are relative to
//! the working directory (unlike `data_dir`, which is relative to the config
//! file's directory).

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use triton_config::{ClusterConfig, TlsConfig};

/// Largest PEM file read. Real ones are a few KiB; the cap keeps a wrong
/// path (a disk image, `/dev/zero`) from eating memory.
pub const MAX_PEM_BYTES: u64 = 1 << 20;

/// How long a TLS handshake may take before the connection is dropped, so a
/// client that connects and says nothing cannot hold a server task.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The PEM contents of a `[tls]` section, checked.
#[derive(Clone)]
struct TlsFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Option<Vec<u8>>,
}

impl TlsFiles {
    fn load(tls: &TlsConfig) -> anyhow::Result<TlsFiles> {
        let cert = read_pem("tls.cert", &tls.cert)?;
        count_certificates("tls.cert", &tls.cert, &cert)?;
        let key = read_pem("tls.key", &tls.key)?;
        check_private_key("tls.key", &tls.key, &key)?;
        let ca = match &tls.ca {
            Some(path) => {
                let ca = read_pem("tls.ca", path)?;
                count_certificates("tls.ca", path, &ca)?;
                Some(ca)
            }
            None => None,
        };
        Ok(TlsFiles { cert, key, ca })
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &self.key)
    }
}

fn read_pem(field: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::File::open(path).with_context(|| format!("{field}: cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{field}: cannot read {}", path.display()))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        bail!(
            "{field}: {} is larger than {MAX_PEM_BYTES} bytes; is it a PEM file?",
            path.display()
        );
    }
    Ok(bytes)
}

fn count_certificates(field: &str, path: &Path, pem: &[u8]) -> anyhow::Result<usize> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::CertificateDer;
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{field}: {} is not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!(
            "{field}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs.len())
}

fn check_private_key(field: &str, path: &Path, pem: &[u8]) -> anyhow::Result<()> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::PrivateKeyDer;
    PrivateKeyDer::from_pem_slice(pem)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{field}: {} holds no usable PEM private key ({e})", path.display()))
}

/// The server side of the config's `[tls]`: `None` when the port is
/// plaintext. With a `ca`, client certificates signed by it are required.
pub fn server_tls(config: &ClusterConfig) -> anyhow::Result<Option<ServerTlsConfig>> {
    let Some(tls) = &config.tls else {
        return Ok(None);
    };
    let files = TlsFiles::load(tls)?;
    let mut server = ServerTlsConfig::new()
        .identity(files.identity())
        .timeout(HANDSHAKE_TIMEOUT);
    if let Some(ca) = &files.ca {
        server = server
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(false);
    }
    Ok(Some(server))
}

/// How this process dials nodes' gRPC ports: plaintext, or TLS with the
/// config's CA (or the system roots) and its certificate as the client
/// identity. Every client of a node (peers, [`crate::client::KvClient`], the
/// CLI, the verifier, tests) builds its endpoints here, so they all speak
/// what the cluster serves.
#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<TlsFiles>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("tls", &self.tls.is_some())
            .field("ca", &self.tls.as_ref().is_some_and(|t| t.ca.is_some()))
            .finish()
    }
}

impl Dialer {
    /// Plain HTTP/2, for clusters without `[tls]`.
    pub fn plaintext() -> Dialer {
        Dialer::default()
    }

    /// Dials as the config says; reads and checks its TLS files now, and
    /// builds one client TLS setup, so a problem that would fail every
    /// connection (no `ca` and no system roots, a key that does not fit)
    /// is reported here, once, instead of by each connection attempt.
    pub fn from_config(config: &ClusterConfig) -> anyhow::Result<Dialer> {
        let dialer = Dialer {
            tls: config.tls.as_ref().map(TlsFiles::load).transpose()?,
        };
        if dialer.is_tls() {
            dialer
                .endpoint("localhost:1")
                .context("the [tls] settings cannot make client connections")?;
        }
        Ok(dialer)
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// An endpoint for the node at `addr` (`host:port`; the host is the name
    /// its certificate must carry), with `TCP_NODELAY`. Callers add their
    /// own timeouts, then `connect()` or `connect_lazy()`.
    pub fn endpoint(&self, addr: &str) -> anyhow::Result<Endpoint> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .with_context(|| format!("bad address {addr:?}"))?
            .tcp_nodelay(true);
        let Some(files) = &self.tls else {
            return Ok(endpoint);
        };
        let mut client = ClientTlsConfig::new()
            .identity(files.identity())
            .timeout(HANDSHAKE_TIMEOUT);
        client = match &files.ca {
            Some(ca) => client.ca_certificate(Certificate::from_pem(ca)),
            None => client.with_native_roots(),
        };
        endpoint
            .tls_config(client)
            .with_context(|| format!("setting up TLS for {addr}"))
    }
}

/// [`Dialer::from_config`] then [`Dialer::endpoint`], for one-off
/// connections; clients that connect often keep the [`Dialer`].
pub fn endpoint(addr: &str, config: &ClusterConfig) -> anyhow::Result<Endpoint> {
    Dialer::from_config(config)?.endpoint(addr)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn tls(cert: PathBuf, key: PathBuf, ca: Option<PathBuf>) -> ClusterConfig {
        ClusterConfig {
            tls: Some(TlsConfig { cert, key, ca }),
            ..ClusterConfig::default()
        }
    }

    #[test]
    fn plaintext_uses_http() {
        let e = Dialer::from_config(&ClusterConfig::default())
            .unwrap()
            .endpoint("127.0.0.1:7000")
            .unwrap();
        assert_eq!(e.uri().to_string(), "http://127.0.0.1:7000/");
        assert!(!Dialer::plaintext().is_tls());
        assert!(server_tls(&ClusterConfig::default()).unwrap().is_none());
    }

    #[test]
    fn bad_files_are_refused_with_the_field_named() {
        let dir = std::env::temp_dir().join(format!("triton-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let empty = write(&dir, "empty.pem", "");
        let junk = write(&dir, "junk.pem", "hello\n");
        let bad_pem = write(
            &dir,
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        );
        let cases: Vec<(ClusterConfig, &str)> = vec![
            (tls(missing.clone(), junk.clone(), None), "tls.cert"),
            (tls(empty.clone(), junk.clone(), None), "tls.cert"),
            (tls(junk.clone(), junk.clone(), None), "tls.cert"),
            (tls(bad_pem.clone(), junk.clone(), None), "tls.cert"),
        ];
        for (config, field) in cases {
            let e = format!("{:#}", Dialer::from_config(&config).unwrap_err());
            assert!(e.contains(field), "{e}");
            let e = format!("{:#}", server_tls(&config).unwrap_err());
            assert!(e.contains(field), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn real_certificates_load_and_a_wrong_key_or_ca_is_named() {
        let dir = std::env::temp_dir().join(format!("triton-tls-unit-ok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let node_key = rcgen::KeyPair::generate().unwrap();
        let node_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&node_key, &issuer)
            .unwrap();
        let ca = write(&dir, "ca.pem", &ca_cert.pem());
        let cert = write(&dir, "node.pem", &node_cert.pem());
        let key = write(&dir, "node-key.pem", &node_key.serialize_pem());
        let junk = write(&dir, "junk.pem", "hello\n");

        let good = tls(cert.clone(), key.clone(), Some(ca.clone()));
        let dialer = Dialer::from_config(&good).unwrap();
        assert!(dialer.is_tls());
        let e = dialer.endpoint("127.0.0.1:7000").unwrap();
        assert_eq!(e.uri().scheme_str(), Some("https"));
        assert!(server_tls(&good).unwrap().is_some());
        assert!(endpoint("127.0.0.1:7000", &tls(cert.clone(), key.clone(), None)).is_ok());

        for (config, field) in [
            (tls(cert.clone(), cert.clone(), None), "tls.key"),
            (tls(cert.clone(), junk.clone(), None), "tls.key"),
            (tls(cert.clone(), key.clone(), Some(junk.clone())), "tls.ca"),
            (tls(cert.clone(), key.clone(), Some(dir.join("nope.pem"))), "tls.ca"),
        ] {
            let e = format!("{:#}", Dialer::from_config(&config).unwrap_err());
            assert!(e.contains(field), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn dev_zero_is_not_read_without_bound() {
        let config = tls(PathBuf::from("/dev/zero"), PathBuf::from("/dev/zero"), None);
        let e = format!("{:#}", Dialer::from_config(&config).unwrap_err());
        assert!(e.contains("larger than"), "{e}");
    }
}
