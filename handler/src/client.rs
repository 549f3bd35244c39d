//! `handler submit`, `handler tasks` and `handler pool`: small clients of a running handler's API, so the
//! command line goes through the same checks as every other producer.

use crate::config::{PoolArgs, SubmitArgs, TasksArgs};
use anyhow::{bail, Context};
use model::{SubmitResponse, TaskPage, WorkItem};

fn request(builder: reqwest::RequestBuilder, key: &Option<String>) -> reqwest::RequestBuilder {
    match key {
        Some(k) => builder.bearer_auth(k),
        None => builder,
    }
}

async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<model::ApiError>(&body) {
        Ok(e) => bail!("{status}: {} ({})", e.message, e.code),
        Err(_) => bail!("{status}: {body}"),
    }
}

/// Submits each argument as one task (times `--count`) and prints the new ids.
pub async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let count = (args.count > 1).then_some(args.count);
    let items: Vec<WorkItem> = args
        .work
        .iter()
        .map(|w| WorkItem {
            work: w.clone(),
            count,
            ..WorkItem::default()
        })
        .collect();
    let url = format!("{}/api/work", args.api.trim_end_matches('/'));
    let resp = request(reqwest::Client::new().post(&url), &args.api_key)
        .json(&items)
        .send()
        .await
        .with_context(|| format!("is the handler running at {}?", args.api))?;
    let created: SubmitResponse = check(resp).await?.json().await?;
    for t in created.tasks {
        println!("{}\t{}", t.id, t.state);
    }
    Ok(())
}

/// Prints a table (or JSON) of the newest tasks.
pub async fn tasks(args: TasksArgs) -> anyhow::Result<()> {
    let mut url = format!(
        "{}/api/tasks?limit={}",
        args.api.trim_end_matches('/'),
        args.limit
    );
    if let Some(s) = &args.state {
        url.push_str(&format!("&state={s}"));
    }
    let resp = request(reqwest::Client::new().get(&url), &args.api_key)
        .send()
        .await
        .with_context(|| format!("is the handler running at {}?", args.api))?;
    let page: TaskPage = check(resp).await?.json().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(());
    }
    println!(
        "{:<20} {:<13} {:>4} {:>5} {:>7} {:<24} WORK",
        "ID", "STATE", "TRY", "EXIT", "SECS", "CONTAINER"
    );
    for t in &page.tasks {
        let exit = t.exit_code.map(|c| c.to_string()).unwrap_or_default();
        let work: String = t
            .work
            .chars()
            .take(40)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        println!(
            "{:<20} {:<13} {:>4} {:>5} {:>7} {:<24} {}",
            t.id.as_str(),
            t.state.as_str(),
            t.attempt,
            exit,
            t.billed_seconds,
            t.container.as_deref().unwrap_or("-"),
            work
        );
    }
    let counts: Vec<String> = page
        .counts
        .iter()
        .map(|(s, n)| format!("{s}: {n}"))
        .collect();
    println!("{}", counts.join(", "));
    Ok(())
}

/// Prints the warm pool (or its JSON): one line per warm container.
pub async fn pool(args: PoolArgs) -> anyhow::Result<()> {
    let url = format!("{}/api/pool", args.api.trim_end_matches('/'));
    let resp = request(reqwest::Client::new().get(&url), &args.api_key)
        .send()
        .await
        .with_context(|| format!("is the handler running at {}?", args.api))?;
    let view: serde_json::Value = check(resp).await?.json().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let size = view["size"].as_u64().unwrap_or(0);
    if size == 0 {
        println!("no warm pool (start the handler with --warm N)");
        return Ok(());
    }
    println!(
        "warm pool: {size} x {} ({} CPU, {} MiB), replaced after {} s",
        view["image"].as_str().unwrap_or("-"),
        view["cpu"],
        view["memory_mb"],
        view["max_age_secs"]
    );
    println!("{:<28} {:<9} {:>8} TASK", "NAME", "STATE", "AGE");
    for c in view["containers"].as_array().into_iter().flatten() {
        println!(
            "{:<28} {:<9} {:>7.1}s {}",
            c["name"].as_str().unwrap_or("-"),
            c["state"].as_str().unwrap_or("-"),
            c["age_secs"].as_f64().unwrap_or(0.0),
            c["task"].as_str().unwrap_or("-"),
        );
    }
    Ok(())
}
