//! HTTP/1.0 GET on 127.0.0.1 (keeps the tests free of an HTTP client) and free ports.

use anyhow::{Context, Result, ensure};
use std::time::Duration;

/// A response: the status code and the body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

impl Response {
    fn parse(raw: &str) -> Result<Self> {
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("no HTTP status line in {head:?}"))?;
        Ok(Self {
            status,
            body: body.to_owned(),
        })
    }

    /// The body of a 200, or an error with the status and body.
    pub fn ok(self) -> Result<String> {
        ensure!(self.status == 200, "HTTP {}: {}", self.status, self.body);
        Ok(self.body)
    }
}

/// GET `path` on 127.0.0.1:`port`.
pub async fn get(port: u16, path: &str) -> Result<Response> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(request(path).as_bytes()).await?;
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut raw))
        .await
        .with_context(|| format!("GET {path}: no answer within 30 s"))??;
    Response::parse(&raw)
}

/// GET without an async runtime (for tests and helpers that run on plain threads).
pub fn get_blocking(port: u16, path: &str) -> Result<Response> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(request(path).as_bytes())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    Response::parse(&raw)
}

fn request(path: &str) -> String {
    format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")
}

/// A port nobody listens on right now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
