//! The worker's inputs: its command line and its environment, read in this one place.

use std::time::Duration;

/// Seconds of demo work when neither `--seconds` nor `WORK_SECONDS` says otherwise (the seed's
/// demo ran for 5 seconds).
pub const DEFAULT_SECONDS: u64 = 5;

/// Usage text for `--help` and argument errors.
pub const USAGE: &str = "usage: worker [--seconds N] [-- CMD ARGS...]\n\
  env: MESSAGE, TASK_ID, CALLBACK_URL, TASK_TOKEN, CONTAINER_NAME, WORK_SECONDS\n\
  the command gets RESULT_PATH: a file whose first 64 KiB are reported as the task's result\n\
  warm pool: POOL_URL, POOL_TOKEN (wait for the task there, then the same as above)";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Args {
    /// `--seconds N`: how long the demo work runs (overrides `WORK_SECONDS`).
    pub seconds: Option<u64>,
    /// Everything after `--`: the user's command, run instead of the demo.
    pub command: Vec<String>,
    /// `--help`: print usage and exit.
    pub help: bool,
}

/// A command line the worker cannot follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgsError(pub String);

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{USAGE}", self.0)
    }
}

impl Args {
    /// Parses the arguments after the program name. Hand-rolled: two flags do not justify a
    /// parser crate in a binary that ships inside every container.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Args, ArgsError> {
        let mut out = Args::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--" => {
                    out.command = it.by_ref().collect();
                    if out.command.is_empty() {
                        return Err(ArgsError("no command after `--`".into()));
                    }
                }
                "-h" | "--help" => out.help = true,
                "--seconds" => {
                    let v = it
                        .next()
                        .ok_or(ArgsError("--seconds needs a value".into()))?;
                    out.seconds = Some(parse_seconds(&v)?);
                }
                other => match other.strip_prefix("--seconds=") {
                    Some(v) => out.seconds = Some(parse_seconds(v)?),
                    None => return Err(ArgsError(format!("unknown argument `{other}`"))),
                },
            }
        }
        Ok(out)
    }
}

fn parse_seconds(v: &str) -> Result<u64, ArgsError> {
    v.trim()
        .parse()
        .map_err(|_| ArgsError(format!("--seconds wants a whole number, not `{v}`")))
}

/// What the spawner put in the container's environment.
#[derive(Clone, Default)]
pub struct Env {
    /// The message: the work's input.
    pub message: String,
    /// The task's id (for log lines only).
    pub task_id: Option<String>,
    /// Full URL of `POST /api/tasks/{id}/state`; absent: run standalone, report nothing.
    pub callback_url: Option<String>,
    /// The task's secret bearer token. Never printed; not passed to the user's command.
    pub token: Option<String>,
    /// The container's name, reported with `InProgress` so the tile can show it.
    pub container: Option<String>,
    /// `WORK_SECONDS`: default length of the demo work.
    pub work_seconds: Option<u64>,
    /// `POOL_URL` and `POOL_TOKEN`: a warm pool container, which gets its task from the handler
    /// (`pool::wait`) instead of from its environment.
    pub pool: Option<PoolEnv>,
    /// What a warm container's assignment set: passed to the user's command as a cold
    /// container's environment would have been.
    pub assigned: Vec<(String, String)>,
}

/// Where a warm container's worker asks for its task, and its pool token. Never printed.
#[derive(Clone)]
pub struct PoolEnv {
    /// Full URL of `GET /api/pool/{slot}/assignment`.
    pub url: String,
    /// This container's own pool token.
    pub token: String,
}

impl std::fmt::Debug for Env {
    /// Hand-written so that a debug print can never show the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("message", &self.message)
            .field("task_id", &self.task_id)
            .field("callback_url", &self.callback_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("container", &self.container)
            .field("work_seconds", &self.work_seconds)
            .field("pool", &self.pool.as_ref().map(|p| (&p.url, "<redacted>")))
            .field("assigned", &self.assigned)
            .finish()
    }
}

impl Env {
    /// Reads the process environment (the only place the worker does).
    pub fn from_process() -> Env {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Env {
            message: var("MESSAGE").unwrap_or_default(),
            task_id: var("TASK_ID"),
            callback_url: var("CALLBACK_URL"),
            token: var("TASK_TOKEN"),
            container: var("CONTAINER_NAME"),
            work_seconds: var("WORK_SECONDS").and_then(|v| v.trim().parse().ok()),
            pool: var("POOL_URL")
                .zip(var("POOL_TOKEN"))
                .map(|(url, token)| PoolEnv { url, token }),
            assigned: Vec::new(),
        }
    }

    /// The environment of a warm container once its task arrived: what a cold container of
    /// the task would have read, and nothing of the pool.
    pub fn assigned(self, a: model::pool::Assignment) -> Env {
        let get = |k: &str| a.env.get(k).filter(|v| !v.is_empty()).cloned();
        Env {
            message: get("MESSAGE").unwrap_or_default(),
            task_id: get("TASK_ID"),
            callback_url: get("CALLBACK_URL"),
            token: Some(a.token.clone()).filter(|t| !t.is_empty()),
            container: get("CONTAINER_NAME"),
            work_seconds: self.work_seconds,
            pool: None,
            assigned: a.env.into_iter().collect(),
        }
    }

    /// How long the demo work runs: `--seconds`, else `WORK_SECONDS`, else [`DEFAULT_SECONDS`].
    pub fn demo_duration(&self, args: &Args) -> Duration {
        Duration::from_secs(
            args.seconds
                .or(self.work_seconds)
                .unwrap_or(DEFAULT_SECONDS),
        )
    }
}

/// The config map directory of a standby worker (`model::standby::CONFIGMAP_DIR_ENV`), if this
/// worker was started ahead of its task.
pub fn standby_dir() -> Option<std::path::PathBuf> {
    std::env::var_os(model::standby::CONFIGMAP_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Args, ArgsError> {
        Args::parse(v.iter().map(|s| s.to_string()))
    }

    #[test]
    fn no_arguments_is_the_demo() {
        assert_eq!(parse(&[]).unwrap(), Args::default());
    }

    #[test]
    fn seconds_in_both_spellings() {
        assert_eq!(parse(&["--seconds", "7"]).unwrap().seconds, Some(7));
        assert_eq!(parse(&["--seconds=0"]).unwrap().seconds, Some(0));
    }

    #[test]
    fn everything_after_double_dash_is_the_command() {
        let a = parse(&["--seconds", "1", "--", "sh", "-c", "exit 3", "--seconds"]).unwrap();
        assert_eq!(a.seconds, Some(1));
        assert_eq!(a.command, ["sh", "-c", "exit 3", "--seconds"]);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(parse(&["--seconds"]).is_err());
        assert!(parse(&["--seconds", "x"]).is_err());
        assert!(parse(&["--seconds", "-1"]).is_err());
        assert!(parse(&["--"]).is_err());
        assert!(parse(&["run"]).unwrap_err().to_string().contains("usage:"));
    }

    #[test]
    fn flag_beats_env_beats_default() {
        let env = Env {
            work_seconds: Some(9),
            ..Env::default()
        };
        let flag = parse(&["--seconds", "2"]).unwrap();
        assert_eq!(env.demo_duration(&flag), Duration::from_secs(2));
        assert_eq!(env.demo_duration(&Args::default()), Duration::from_secs(9));
        assert_eq!(
            Env::default().demo_duration(&Args::default()),
            Duration::from_secs(DEFAULT_SECONDS)
        );
    }

    #[test]
    fn an_assignment_becomes_a_cold_environment() {
        let pooled = Env {
            pool: Some(PoolEnv {
                url: "http://h/api/pool/p/assignment".into(),
                token: "pool-secret".into(),
            }),
            work_seconds: Some(3),
            ..Env::default()
        };
        let a = model::pool::Assignment {
            env: [
                ("MESSAGE", "echo hi"),
                ("TASK_ID", "t1"),
                ("CALLBACK_URL", "http://h/api/tasks/t1/state"),
                ("CONTAINER_NAME", "eda-t1-1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            token: "task-secret".into(),
        };
        let env = pooled.assigned(a);
        assert_eq!(env.message, "echo hi");
        assert_eq!(
            env.callback_url.as_deref(),
            Some("http://h/api/tasks/t1/state")
        );
        assert_eq!(env.token.as_deref(), Some("task-secret"));
        assert_eq!(env.container.as_deref(), Some("eda-t1-1"));
        assert_eq!(env.work_seconds, Some(3));
        assert!(env.pool.is_none());
        assert!(env.assigned.contains(&("MESSAGE".into(), "echo hi".into())));
        assert!(!format!("{env:?}").contains("secret"));
    }

    #[test]
    fn debug_never_shows_the_token() {
        let env = Env {
            token: Some("s3cret-token".into()),
            ..Env::default()
        };
        assert!(!format!("{env:?}").contains("s3cret"));
    }
}
