//! `http.request` over https through the binary, the roots found as a user
//! finds them: a loopback TLS server whose CA is made here is trusted when
//! `SSL_CERT_FILE` names that CA (the POST arrives, the answer is the
//! step's result), and refused, saying how to trust it, when `SSL_CERT_FILE`
//! names another CA or is not set (the system's store).

mod common;

use common::{orch_cmd, run};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

const FLOW: &str = r#"
name: notify
parameters: { url: "" }
steps:
  - name: tell
    module: http
    action: request
    parameters:
      url: "${params.url}"
      headers: { x-token: abc }
      json: { run: "${run.id}", build: done }
      timeout: 20s
"#;

/// A CA named `ca_name` (its certificate in PEM) and a server certificate it signed for
/// localhost and 127.0.0.1.
fn certificates(ca_name: &str) -> (String, CertificateDer<'static>, PrivateKeyDer<'static>) {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .expect("params");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = leaf.signed_by(&key, &issuer).expect("server certificate");
    let key = PrivateKeyDer::from(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (ca_pem, cert.der().clone(), key)
}

/// A TLS server on 127.0.0.1 (a thread per connection, for the life of the
/// test binary): every request is answered 200 with a JSON body; the
/// request lines and bodies it read are kept.
fn serve(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> (u16, Arc<Mutex<Vec<String>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server config"),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { return };
            let (config, log) = (config.clone(), log.clone());
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(std::time::Duration::from_secs(20)));
                let conn = rustls::ServerConnection::new(config).expect("connection");
                let mut s = rustls::StreamOwned::new(conn, tcp);
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // A handshake the client refuses ends here, in an error.
                let head_end = loop {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
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
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let line = head.lines().next().unwrap_or_default();
                let body = String::from_utf8_lossy(&buf[head_end..]);
                log.lock().expect("log").push(format!("{line} {body}"));
                let text = r#"{"ok":true}"#;
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                s.conn.send_close_notify();
                let _ = s.flush();
            });
        }
    });
    (port, seen)
}

/// `orch run flow.yaml` with SSL_CERT_FILE set to `cert_file` (unset for
/// `None`, SSL_CERT_DIR unset): exit code, stdout, stderr.
fn run_with(dir: &Path, url: &str, cert_file: Option<&Path>) -> (i32, String, String) {
    let mut c = orch_cmd(dir);
    c.env_remove("SSL_CERT_DIR");
    match cert_file {
        Some(f) => c.env("SSL_CERT_FILE", f),
        None => c.env_remove("SSL_CERT_FILE"),
    };
    let out = c
        .args(["run", "flow.yaml", "-p", &format!("url={url}")])
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The step's stored result (`orch runs show last --json`).
fn tell(dir: &Path) -> serde_json::Value {
    let (code, out, err) = run(dir, &["runs", "show", "last", "--json"]);
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    shown["tasks"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "tell"))
        .cloned()
        .unwrap_or_else(|| panic!("no step tell in {shown}"))
}

#[test]
fn https_trusts_the_ca_that_ssl_cert_file_names_and_refuses_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("flow.yaml"), FLOW).expect("write");
    let (ca_pem, cert, key) = certificates("orch test CA");
    std::fs::write(d.join("ca.pem"), &ca_pem).expect("write");
    let (other_pem, _, _) = certificates("another CA");
    std::fs::write(d.join("other-ca.pem"), &other_pem).expect("write");
    let (port, seen) = serve(cert, key);
    let url = format!("https://localhost:{port}/hooks/builds");

    // Trusted through SSL_CERT_FILE: the POST arrives, the answer is the result.
    let (code, out, err) = run_with(d, &url, Some(&d.join("ca.pem")));
    assert_eq!(code, 0, "{out}\n{err}");
    let step = tell(d);
    assert_eq!(step["status"], "completed", "{step}");
    assert_eq!(step["result"]["data"]["status"], 200, "{step}");
    assert_eq!(
        step["result"]["data"]["body"],
        serde_json::json!({"ok": true}),
        "{step}"
    );
    let got = seen.lock().expect("seen").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("POST /hooks/builds HTTP/1.1 {\"run\":\"")
            && got[0].contains("\"build\":\"done\""),
        "{got:?}"
    );

    // Another CA in SSL_CERT_FILE: refused, saying which roots and how to fix it.
    let other = d.join("other-ca.pem");
    let (code, out, err) = run_with(d, &url, Some(&other));
    assert_eq!(code, 1, "{out}\n{err}");
    let step = tell(d);
    assert_eq!(step["status"], "failed", "{step}");
    assert_eq!(step["result"]["error_type"], "TlsError", "{step}");
    let shown = step["result"]["error_message"].as_str().unwrap_or_default();
    for says in [
        "not signed by a certificate authority this machine trusts",
        &format!("1 roots from SSL_CERT_FILE={}", other.display()),
        "set SSL_CERT_FILE to a PEM file holding that CA",
    ] {
        assert!(shown.contains(says), "{says:?} in {shown}");
    }

    // No SSL_CERT_FILE: the system's store, which does not hold the test CA.
    let (code, out, err) = run_with(d, &url, None);
    assert_eq!(code, 1, "{out}\n{err}");
    let step = tell(d);
    assert_eq!(step["result"]["error_type"], "TlsError", "{step}");
    let shown = step["result"]["error_message"].as_str().unwrap_or_default();
    for says in ["roots from the system's store", "set SSL_CERT_FILE"] {
        assert!(shown.contains(says), "{says:?} in {shown}");
    }
    assert_eq!(seen.lock().expect("seen").len(), 1, "nothing more arrived");
}
