//! A client of `GET /api/events` that timestamps each task frame the moment it arrives.

use anyhow::Context;
use futures::StreamExt;
use model::{Task, TaskEvent};
use std::time::Instant;
use tokio::sync::mpsc;

/// A task frame and when it was read.
pub type Stamped = (Instant, Task);

/// Subscribes to `base/api/events`; returns once the stream is open (the handler's
/// `: connected` comment arrived), so no frame after this call can be missed.
pub async fn subscribe(base: &str) -> anyhow::Result<mpsc::UnboundedReceiver<Stamped>> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/events"))
        .send()
        .await?
        .error_for_status()?;
    let mut body = resp.bytes_stream();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut buf = String::new();
    // Read up to the first frame boundary (the connected comment) before returning.
    while !buf.contains("\n\n") {
        let chunk = body
            .next()
            .await
            .context("the event stream ended at once")??;
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    tokio::spawn(async move {
        loop {
            while let Some(end) = buf.find("\n\n") {
                let frame: String = buf.drain(..end + 2).collect();
                if let Some(task) = parse(&frame) {
                    if tx.send((Instant::now(), task)).is_err() {
                        return;
                    }
                }
            }
            match body.next().await {
                Some(Ok(chunk)) => buf.push_str(&String::from_utf8_lossy(&chunk)),
                _ => return,
            }
        }
    });
    Ok(rx)
}

/// The task of an `event: task` frame.
fn parse(frame: &str) -> Option<Task> {
    let mut lines = frame.lines();
    if lines.next()? != "event: task" {
        if frame.starts_with("event: resync") {
            eprintln!("warning: the event stream lagged (resync); counts fall back to polling");
        }
        return None;
    }
    let data = lines.find_map(|l| l.strip_prefix("data: "))?;
    serde_json::from_str::<TaskEvent>(data).ok().map(|e| e.task)
}
