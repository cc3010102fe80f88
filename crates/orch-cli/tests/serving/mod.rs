//! `orch serve` started by a test (`orch [BEFORE] serve --bind 127.0.0.1:0
//! [AFTER]`) and one request to it over loopback. Each test file uses only
//! some of it.
#![allow(dead_code)]

use super::common::orch_cmd;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

/// `orch serve` on a free loopback port; killed when dropped.
pub struct Serve {
    pub child: Child,
    pub addr: String,
    pub token: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(dir: &Path, before: &[&str], after: &[&str]) -> Serve {
    let mut child = orch_cmd(dir)
        .env_remove("RUST_LOG")
        .args(before)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(after)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut addr, mut token) = (None, None);
    while addr.is_none() {
        let line = lines.next().expect("a line").expect("text");
        if let Some(t) = line.strip_prefix("token: ") {
            token = Some(t.to_owned());
        }
        if let Some(rest) = line.strip_prefix("orch serve: http://") {
            addr = rest.split(' ').next().map(str::to_owned);
        }
    }
    Serve {
        child,
        addr: addr.expect("address"),
        token: token.expect("the token, printed at the first start"),
    }
}

/// One request over loopback (`Connection: close`): status and body.
pub fn request(s: &Serve, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(&s.addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    write!(
        tcp,
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        s.addr,
        s.token,
        body.len()
    )
    .expect("write");
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).expect("read");
    let (head, rest) = answer.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = String::new();
        let mut s = rest;
        while let Some((size, more)) = s.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
            if n == 0 {
                break;
            }
            out.push_str(&more[..n]);
            s = more[n..].strip_prefix("\r\n").unwrap_or(&more[n..]);
        }
        out
    } else {
        rest.to_owned()
    };
    (status, body)
}
