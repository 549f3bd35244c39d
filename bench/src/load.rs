//! A small HTTP/1.1 load generator: `connections` keep-alive connections on loopback, each
//! sending one request after the other for a fixed time. Raw bytes on a `TcpStream`, so the
//! generator costs little CPU next to the server it measures (they share two cores).

use crate::stats::Summary;
use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What one run achieved.
#[derive(Debug)]
pub struct LoadResult {
    /// Responses with the expected status.
    pub ok: u64,
    /// Responses with another status.
    pub other: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency of each successful request.
    pub latency: Summary,
}

impl LoadResult {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

/// One request to repeat: `METHOD path` with an optional JSON body.
#[derive(Debug, Clone)]
pub struct Request {
    /// Raw bytes of the whole request.
    bytes: Vec<u8>,
    /// The status counted as success.
    pub expect: u16,
}

impl Request {
    /// A request; `body` is sent as JSON when given.
    pub fn new(method: &str, path: &str, body: Option<&str>, expect: u16) -> Request {
        let mut s = format!("{method} {path} HTTP/1.1\r\nHost: bench\r\n");
        if let Some(b) = body {
            s.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            s.push_str("\r\n");
        }
        Request {
            bytes: s.into_bytes(),
            expect,
        }
    }
}

/// Runs `req` on `connections` connections for `duration`.
pub async fn run(
    addr: SocketAddr,
    req: &Request,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    let start = Instant::now();
    let until = start + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let req = req.clone();
        tasks.push(tokio::spawn(
            async move { connection(addr, &req, until).await },
        ));
    }
    let (mut ok, mut other, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        let (o, x, l) = t.await??;
        ok += o;
        other += x;
        lat.extend(l);
    }
    if lat.is_empty() {
        bail!("no request succeeded");
    }
    Ok(LoadResult {
        ok,
        other,
        elapsed: start.elapsed(),
        latency: Summary::of(&lat),
    })
}

async fn connection(
    addr: SocketAddr,
    req: &Request,
    until: Instant,
) -> anyhow::Result<(u64, u64, Vec<Duration>)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut buf = Vec::with_capacity(64 * 1024);
    let (mut ok, mut other, mut lat) = (0, 0, Vec::new());
    while Instant::now() < until {
        let t0 = Instant::now();
        stream.write_all(&req.bytes).await?;
        let status = read_response(&mut stream, &mut buf).await?;
        if status == req.expect {
            ok += 1;
            lat.push(t0.elapsed());
        } else {
            other += 1;
        }
    }
    Ok((ok, other, lat))
}

/// Reads one response (headers and a `Content-Length` body); returns its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    buf.clear();
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .context("no status")?
        .parse()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .context("the generator needs Content-Length responses")?;
    while buf.len() < head_end + len {
        read_more(stream, buf).await?;
    }
    Ok(status)
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    if n == 0 {
        bail!("the server closed the connection");
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
