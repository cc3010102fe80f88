//! https for `http.request`: rustls (with the ring provider, TLS 1.2 and
//! 1.3) over the TCP stream. The server's certificate and its host name are
//! always verified, against the roots this machine trusts: the system's
//! store, or `SSL_CERT_FILE` / `SSL_CERT_DIR` when either is set
//! (rustls-native-certs reads them; they replace the system's store, they do
//! not add to it). The roots are read once per process, on the first https
//! request, and kept.

use crate::action::ActionError;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, RootCertStore};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The variables that name the roots to trust instead of the system's.
const CERT_FILE: &str = "SSL_CERT_FILE";
const CERT_DIR: &str = "SSL_CERT_DIR";

/// What to do when the server's CA is not trusted here.
const TRUST_HOW: &str = "if the server uses a private CA, set SSL_CERT_FILE to a PEM file holding that CA (and the public roots too, if other https requests need them: SSL_CERT_FILE replaces the system's store)";

/// How https connections are made: the roots they trust.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    /// Where the roots came from, for messages: "140 roots from the
    /// system's store".
    roots: String,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("roots", &self.roots).finish()
    }
}

impl Tls {
    /// The roots of this machine (or of `SSL_CERT_FILE` / `SSL_CERT_DIR`),
    /// read on the first call and kept for the process. A failure is not
    /// kept: a later request reads them again.
    pub(crate) async fn system() -> Result<Arc<Tls>, ActionError> {
        static SYSTEM: Mutex<Option<Arc<Tls>>> = Mutex::new(None);
        if let Some(t) = SYSTEM
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(t);
        }
        // Reading a few hundred files must not hold up the runtime's thread.
        let t = tokio::task::spawn_blocking(Self::load_system)
            .await
            .map_err(|e| {
                ActionError::permanent(
                    "TlsError",
                    format!("reading the trusted root certificates stopped: {e}"),
                )
            })??;
        let t = Arc::new(t);
        *SYSTEM.lock().unwrap_or_else(PoisonError::into_inner) = Some(t.clone());
        Ok(t)
    }

    fn load_system() -> Result<Tls, ActionError> {
        let named = |var: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(|v| format!("{var}={}", v.to_string_lossy()))
        };
        let source = match (named(CERT_FILE), named(CERT_DIR)) {
            (Some(f), Some(d)) => format!("{f} and {d}"),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => "the system's store".to_owned(),
        };
        let found = rustls_native_certs::load_native_certs();
        let problems: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        if found.certs.is_empty() {
            let why = match problems.is_empty() {
                true => String::new(),
                false => format!(" ({})", problems.join("; ")),
            };
            return Err(ActionError::permanent(
                "TlsError",
                format!(
                    "no trusted root certificates were found in {source}{why}; install the system's CA bundle (the ca-certificates package) or set SSL_CERT_FILE to a PEM file of the CAs to trust"
                ),
            ));
        }
        if !problems.is_empty() {
            tracing::warn!(
                source = source.as_str(),
                "http.request: some root certificates could not be read: {}",
                problems.join("; ")
            );
        }
        Self::with_roots(found.certs, &source)
    }

    /// https trusting `roots` (DER certificates) only; `source` says where
    /// they came from, for messages.
    pub(crate) fn with_roots(
        roots: Vec<CertificateDer<'static>>,
        source: &str,
    ) -> Result<Tls, ActionError> {
        let mut store = RootCertStore::empty();
        let (added, ignored) = store.add_parsable_certificates(roots);
        if added == 0 {
            return Err(ActionError::permanent(
                "TlsError",
                format!(
                    "none of the {ignored} root certificates in {source} could be used; set SSL_CERT_FILE to a PEM file of the CAs to trust"
                ),
            ));
        }
        // The provider is named rather than taken from the process default,
        // so that another part of the program installing one changes nothing.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ActionError::permanent("TlsError", format!("the TLS configuration: {e}")))?
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            roots: format!("{added} roots from {source}"),
        })
    }

    /// The TLS handshake on `tcp` with `host` (its name sent as SNI, unless
    /// it is an IP address; the certificate must name it).
    pub(crate) async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
        what: &str,
    ) -> Result<TlsStream<TcpStream>, ActionError> {
        let name = server_name(host)
            .map_err(|e| ActionError::invalid_parameters(format!("{what}: {e}")))?;
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| self.explain(&e, host, what))
    }

    /// A failed handshake, said with what to do about it.
    fn explain(&self, e: &std::io::Error, host: &str, what: &str) -> ActionError {
        let Some(tls) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        else {
            // The connection itself failed: another attempt may do better.
            let message = match e.kind() {
                std::io::ErrorKind::UnexpectedEof => format!(
                    "{what}: the server closed the connection during the TLS handshake (is this port an https one?)"
                ),
                _ => format!("{what}: the TLS handshake failed: {e}"),
            };
            return ActionError::retryable("ConnectionError", message);
        };
        use rustls::Error as E;
        let message = match tls {
            E::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => format!(
                    "the server's certificate is not signed by a certificate authority this machine trusts (unknown issuer; trusted: {}); {TRUST_HOW}",
                    self.roots
                ),
                CertificateError::NotValidForName => format!(
                    "the server's certificate is not valid for the host `{host}`; use a host name the certificate names in the URL, or give the server a certificate for `{host}`"
                ),
                CertificateError::NotValidForNameContext { presented, .. } => format!(
                    "the server's certificate is not valid for the host `{host}` (it names {}); use a host name the certificate names in the URL, or give the server a certificate for `{host}`",
                    names(presented)
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => format!(
                    "the server's certificate has expired ({c}); the server must renew it (or this machine's clock is wrong)"
                ),
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    format!(
                        "the server's certificate is not valid yet ({c}); check this machine's clock"
                    )
                }
                CertificateError::Revoked => "the server's certificate has been revoked".to_owned(),
                CertificateError::BadSignature => format!(
                    "the server's certificate names a trusted CA as its issuer but its signature does not verify against it (trusted: {}): it is damaged or forged, or signed by another CA of the same name; {TRUST_HOW}",
                    self.roots
                ),
                other => format!("the server's certificate was refused: {other}"),
            },
            E::NoCertificatesPresented => "the server presented no certificate".to_owned(),
            E::AlertReceived(alert) => format!(
                "the server refused the TLS handshake (alert: {alert:?}); it may want a TLS version or cipher suite this client does not offer (TLS 1.2 and 1.3), or a client certificate"
            ),
            E::PeerIncompatible(p) => format!(
                "the server and this client have no TLS version or cipher suite in common ({p:?}); this client speaks TLS 1.2 and 1.3"
            ),
            E::InvalidMessage(_) | E::InappropriateMessage { .. } => format!(
                "the server did not answer in TLS ({tls}); is this port a plain http:// one?"
            ),
            other => format!("the TLS handshake failed: {other}"),
        };
        // No second attempt changes a certificate or a server's settings.
        ActionError::permanent("TlsError", format!("{what}: {message}"))
    }
}

/// The host names and addresses a certificate names, as a person writes
/// them: webpki gives `DnsName("a.example")` and `IpAddress(127.0.0.1)`.
fn names(presented: &[String]) -> String {
    let shown: Vec<&str> = presented
        .iter()
        .filter_map(|n| {
            n.strip_prefix("DnsName(\"")
                .and_then(|n| n.strip_suffix("\")"))
                .or_else(|| {
                    n.strip_prefix("IpAddress(")
                        .and_then(|n| n.strip_suffix(')'))
                })
        })
        .collect();
    match shown.is_empty() {
        true => "no host name or address".to_owned(),
        false => shown.join(", "),
    }
}

/// The name to verify the certificate against (and to send as SNI).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_owned())
        .map_err(|e| format!("`{host}` is not a host name TLS can verify: {e}"))
}

#[cfg(test)]
mod tests {
    //! https against loopback TLS servers whose CA and certificates are made
    //! here; the client is handed the CA to trust (the tests in
    //! crates/orch-cli/tests/https.rs trust it through SSL_CERT_FILE).

    use super::super::Planned;
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use serde_json::{Value, json};
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    struct Ca {
        issuer: Issuer<'static, KeyPair>,
        der: CertificateDer<'static>,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).expect("CA certificate");
        Ca {
            der: cert.der().clone(),
            issuer: Issuer::new(p, key),
        }
    }

    /// A server certificate for `names` (host names or IP addresses).
    fn leaf(ca: &Ca, names: &[&str]) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut p = CertificateParams::new(names).expect("params");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &ca.issuer).expect("server certificate");
        let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }

    /// What a server received: the SNI name, the request head, the body.
    #[derive(Debug, Clone)]
    struct Seen {
        sni: Option<String>,
        head: String,
        body: String,
    }

    type Log = Arc<Mutex<Vec<Seen>>>;

    /// Reads one request; answers `/ok` with 200 and JSON (the method and
    /// the body it got), `/moved` with a redirect to an http:// URL.
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, sni: Option<String>, log: &Log) {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let len: usize = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
        let mut words = head.split(' ');
        let method = words.next().unwrap_or_default().to_owned();
        let path = words.next().unwrap_or_default().to_owned();
        log.lock().expect("log").push(Seen {
            sni,
            head: head.clone(),
            body: body.clone(),
        });
        let resp = match path.as_str() {
            "/moved" => "HTTP/1.1 301 Moved Permanently\r\nlocation: http://127.0.0.1:9/elsewhere\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
            _ => {
                let got = serde_json::from_str::<Value>(&body).unwrap_or(Value::Null);
                let text = json!({"method": method, "got": got}).to_string();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                )
            }
        };
        let _ = s.write_all(resp.as_bytes()).await;
        let _ = s.shutdown().await;
    }

    /// A TLS server on 127.0.0.1 with this certificate: its port and what
    /// it received.
    async fn serve(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> (u16, Log) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log: Log = Arc::default();
        let seen = log.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    // A handshake the client breaks off ends here.
                    if let Ok(mut s) = acceptor.accept(tcp).await {
                        let sni = s.get_ref().1.server_name().map(str::to_owned);
                        answer(&mut s, sni, &seen).await;
                    }
                });
            }
        });
        (port, log)
    }

    /// A plain TCP server: answers in plain HTTP (`talk`) or says nothing.
    async fn plain(talk: bool) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if talk {
                        let mut chunk = [0u8; 1024];
                        let _ = s.read(&mut chunk).await;
                        let _ = s
                            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                    } else {
                        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                    }
                    drop(s);
                });
            }
        });
        port
    }

    fn trusting(ca: &Ca, source: &str) -> Arc<Tls> {
        Arc::new(Tls::with_roots(vec![ca.der.clone()], source).expect("roots"))
    }

    async fn request(params: Value, tls: &Arc<Tls>) -> Result<Value, ActionError> {
        let plan = Planned::of(&params).expect("valid parameters");
        plan.exchange(1 << 20, Some(tls.clone())).await
    }

    #[tokio::test]
    async fn get_and_post_over_https_reach_a_server_signed_by_a_trusted_ca() {
        let ca = ca("orch test CA");
        let (cert, key) = leaf(&ca, &["localhost", "127.0.0.1"]);
        let (port, log) = serve(cert, key).await;
        let tls = trusting(&ca, "the test CA");

        let got = request(json!({"url": format!("https://127.0.0.1:{port}/ok")}), &tls)
            .await
            .expect("GET succeeds");
        assert_eq!(got["status"], 200);
        assert_eq!(got["body"], json!({"method": "GET", "got": null}));

        let got = request(
            json!({
                "url": format!("https://localhost:{port}/ok?x=1"),
                "headers": {"x-token": "abc"},
                "json": {"run": "r1", "ok": true},
            }),
            &tls,
        )
        .await
        .expect("POST succeeds");
        assert_eq!(got["status"], 200);
        assert_eq!(
            got["body"],
            json!({"method": "POST", "got": {"run": "r1", "ok": true}})
        );

        let seen = log.lock().expect("log").clone();
        assert_eq!(seen.len(), 2, "{seen:?}");
        // No SNI for an IP address; the host name otherwise.
        assert_eq!(seen[0].sni, None);
        assert!(seen[0].head.starts_with("GET /ok HTTP/1.1\r\n"), "{seen:?}");
        assert_eq!(seen[1].sni.as_deref(), Some("localhost"));
        let head = seen[1].head.to_ascii_lowercase();
        assert!(head.starts_with("post /ok?x=1 http/1.1\r\n"), "{head}");
        assert!(
            head.contains(&format!("\r\nhost: localhost:{port}\r\n")),
            "{head}"
        );
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\nx-token: abc\r\n"), "{head}");
        assert_eq!(
            serde_json::from_str::<Value>(&seen[1].body).expect("JSON body"),
            json!({"run": "r1", "ok": true})
        );

        // A redirect is the answer: an https request never goes on to the
        // http:// URL it names.
        let got = request(
            json!({"url": format!("https://127.0.0.1:{port}/moved"), "fail_on_status": false}),
            &tls,
        )
        .await
        .expect("the 301 is the result");
        assert_eq!(got["status"], 301);
        assert_eq!(got["headers"]["location"], "http://127.0.0.1:9/elsewhere");
        let e = request(
            json!({"url": format!("https://127.0.0.1:{port}/moved")}),
            &tls,
        )
        .await
        .expect_err("a 301 fails by default");
        assert_eq!(e.error_type, "HttpStatus");
        assert!(e.message.contains("answered 301 Moved Permanently"), "{e}");
        assert_eq!(log.lock().expect("log").len(), 4);
    }

    #[tokio::test]
    async fn a_server_whose_ca_is_not_trusted_is_refused_and_sent_nothing() {
        let ca_of_server = ca("orch test CA");
        let (cert, key) = leaf(&ca_of_server, &["localhost", "127.0.0.1"]);
        let (port, log) = serve(cert, key).await;
        let tls = trusting(&ca("another CA"), "SSL_CERT_FILE=/tmp/other.pem");
        let url = format!("https://127.0.0.1:{port}/ok");
        let e = request(json!({"url": url, "json": {"secret": 1}}), &tls)
            .await
            .expect_err("refused");
        assert_eq!(e.error_type, "TlsError");
        assert!(!e.retryable, "no retry makes the CA trusted");
        for says in [
            &format!("POST {url}: ") as &str,
            "not signed by a certificate authority this machine trusts",
            "unknown issuer",
            "trusted: 1 roots from SSL_CERT_FILE=/tmp/other.pem",
            "set SSL_CERT_FILE to a PEM file holding that CA",
        ] {
            assert!(e.message.contains(says), "{says:?} in {e}");
        }
        assert!(log.lock().expect("log").is_empty(), "nothing was sent");

        // A trusted CA of the same name but another key: the signature fails.
        let tls = trusting(&ca("orch test CA"), "the system's store");
        let e = request(json!({"url": url}), &tls)
            .await
            .expect_err("refused");
        assert_eq!(e.error_type, "TlsError");
        for says in [
            "its signature does not verify",
            "another CA of the same name",
            "set SSL_CERT_FILE",
        ] {
            assert!(e.message.contains(says), "{says:?} in {e}");
        }
        assert!(log.lock().expect("log").is_empty(), "nothing was sent");

        // Roots that are no certificates at all are refused up front.
        let e = Tls::with_roots(vec![CertificateDer::from(b"not DER".to_vec())], "a file")
            .expect_err("no usable root");
        assert!(
            e.message
                .contains("none of the 1 root certificates in a file could be used"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_certificate_for_another_host_is_refused() {
        let ca = ca("orch test CA");
        let tls = trusting(&ca, "the test CA");
        // Asked by IP address, the certificate names only a host name.
        let (cert, key) = leaf(&ca, &["localhost"]);
        let (port, log) = serve(cert, key).await;
        let e = request(json!({"url": format!("https://127.0.0.1:{port}/ok")}), &tls)
            .await
            .expect_err("refused");
        assert_eq!(e.error_type, "TlsError");
        assert!(!e.retryable);
        assert!(
            e.message
                .contains("not valid for the host `127.0.0.1` (it names localhost)"),
            "{e}"
        );
        assert!(log.lock().expect("log").is_empty());
        // Asked by name, the certificate is for another name.
        let (cert, key) = leaf(&ca, &["hooks.other.test", "127.0.0.2"]);
        let (port, log) = serve(cert, key).await;
        let e = request(json!({"url": format!("https://localhost:{port}/ok")}), &tls)
            .await
            .expect_err("refused");
        assert_eq!(e.error_type, "TlsError");
        for says in [
            "not valid for the host `localhost` (it names hooks.other.test, 127.0.0.2)",
            "use a host name the certificate names in the URL",
        ] {
            assert!(e.message.contains(says), "{says:?} in {e}");
        }
        assert!(log.lock().expect("log").is_empty());
    }

    #[tokio::test]
    async fn a_plain_http_port_and_a_silent_server_fail_clearly() {
        let tls = trusting(&ca("orch test CA"), "the test CA");
        let port = plain(true).await;
        let e = request(json!({"url": format!("https://127.0.0.1:{port}/ok")}), &tls)
            .await
            .expect_err("no TLS there");
        assert_eq!(e.error_type, "TlsError");
        assert!(
            e.message.contains("the server did not answer in TLS")
                && e.message.contains("plain http:// one"),
            "{e}"
        );
        // The timeout covers the handshake, and says that is where it was.
        let port = plain(false).await;
        let e = request(
            json!({"url": format!("https://127.0.0.1:{port}/ok"), "timeout": "300ms"}),
            &tls,
        )
        .await
        .expect_err("times out");
        assert_eq!(e.error_type, "TimeoutError");
        assert!(
            e.message
                .contains("took longer than its timeout of 300ms (in the TLS handshake)"),
            "{e}"
        );
    }
}
