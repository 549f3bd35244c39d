//! What a mode runs on (store, runtime, worker binary), resolved from its flags in one step;
//! [`crate::compose`] builds it.

use super::{
    AzureArgs, CheckArgs, ConfigError, Containment, ContainmentArgs, FunctionsArgs, LocalArgs,
    RuntimeChoice,
};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;

/// Where task state lives (`--store`, functions mode; local mode always uses SQLite, which
/// also holds its queue, so that "record Pending + enqueue" is one transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreChoice {
    /// A SQLite file in `--data-dir` (`eda.db`).
    Sqlite,
    /// MongoDB / Cosmos DB for MongoDB (`--mongo-uri`).
    Mongo,
}

/// Connection of the MongoDB store.
#[derive(Debug, Clone)]
pub struct MongoTarget {
    /// Connection string (secret: never logged).
    pub uri: String,
    /// Database name.
    pub db: String,
    /// Tasks collection.
    pub collection: String,
}

/// The store, resolved.
#[derive(Debug, Clone)]
pub enum StoreTarget {
    /// SQLite at this path.
    Sqlite(PathBuf),
    /// MongoDB, connected lazily in functions mode (`functions::lazy`).
    Mongo(MongoTarget),
}

/// The backends a mode runs on, resolved from its flags in one step; `compose` builds them.
#[derive(Debug, Clone)]
pub struct Backends {
    /// Where task state lives.
    pub store: StoreTarget,
    /// Where tasks run.
    pub runtime: RuntimeChoice,
    /// Folder for the SQLite database and the process runtime's logs.
    pub data_dir: PathBuf,
    /// `--worker-bin`, when given; else the worker is looked for ([`find_worker`]) only when it
    /// is needed (process runtime, or a worker image to build).
    pub worker_bin: Option<PathBuf>,
    /// How Docker task containers are contained.
    pub containment: Containment,
    /// Azure settings (the ACI runtime), functions mode only.
    pub azure: Option<Box<AzureArgs>>,
}

/// Where the static worker binary is looked for when `--worker-bin` is not given, in order:
/// the musl build of this checkout (`cargo xtask worker` writes
/// `target/x86_64-unknown-linux-musl/release/worker`, next to `target/release/` and
/// `target/debug/` where this executable lives; static, so it also runs in a `FROM scratch`
/// image), then `worker` next to this executable (an unpacked release or the Function App zip).
pub fn worker_candidates() -> Vec<PathBuf> {
    match std::env::current_exe() {
        Ok(exe) => worker_candidates_of(&exe),
        Err(_) => vec![PathBuf::from("worker")],
    }
}

/// [`worker_candidates`] for the executable at `exe`.
fn worker_candidates_of(exe: &std::path::Path) -> Vec<PathBuf> {
    let Some(dir) = exe.parent() else {
        return vec![PathBuf::from("worker")];
    };
    let musl = dir
        .parent()
        .map(|target| target.join("x86_64-unknown-linux-musl/release/worker"));
    musl.into_iter().chain([dir.join("worker")]).collect()
}

/// The worker binary: `flag` when given (it must exist), else the first of
/// [`worker_candidates`] that exists; the error names every place looked at.
pub fn find_worker(flag: Option<&std::path::Path>) -> Result<PathBuf, ConfigError> {
    match flag {
        Some(p) => first_file(vec![p.to_path_buf()]),
        None => first_file(worker_candidates()),
    }
}

fn first_file(looked: Vec<PathBuf>) -> Result<PathBuf, ConfigError> {
    match looked.iter().find(|p| p.is_file()) {
        Some(p) => Ok(p.clone()),
        None => Err(ConfigError::NoWorker(looked)),
    }
}

/// Containment of Docker tasks in functions mode on a laptop: the hardening of local mode's
/// defaults (and its `EDA_TASK_*` variables), on the host network, since tasks call back the
/// Functions host's URL, which usually listens on loopback.
fn host_network_containment() -> Result<Containment, ConfigError> {
    #[derive(Parser)]
    struct Defaults {
        #[command(flatten)]
        c: ContainmentArgs,
    }
    Defaults::try_parse_from(["handler", "--task-network=host"])
        .map_err(|e| ConfigError::OutOfRange(e.to_string()))?
        .c
        .resolve()
}

impl LocalArgs {
    /// Local mode's backends: SQLite in `--data-dir`, Docker or processes as `--runtime` says.
    pub fn backends(&self) -> Result<Backends, ConfigError> {
        if self.runtime == RuntimeChoice::Aci {
            return Err(ConfigError::OutOfRange(
                "--runtime aci runs in `handler functions` only; local mode runs tasks on docker or process".into(),
            ));
        }
        Ok(Backends {
            store: StoreTarget::Sqlite(self.data_dir.join("eda.db")),
            runtime: self.runtime,
            data_dir: self.data_dir.clone(),
            worker_bin: self.worker_bin.clone(),
            containment: self.containment.resolve()?,
            azure: None,
        })
    }
}

impl FunctionsArgs {
    /// Functions mode's backends, as `--store` and `--runtime` say; the settings each needs
    /// must be there (named when missing).
    pub fn backends(&self) -> Result<Backends, ConfigError> {
        let a = &self.azure;
        let store = match self.store {
            StoreChoice::Sqlite => StoreTarget::Sqlite(self.data_dir.join("eda.db")),
            StoreChoice::Mongo if a.mongo_uri.is_empty() => {
                return Err(ConfigError::Missing(
                    "--store mongo needs --mongo-uri / EDA_MONGO_URI (or use --store sqlite)"
                        .into(),
                ))
            }
            StoreChoice::Mongo => StoreTarget::Mongo(MongoTarget {
                uri: a.mongo_uri.clone(),
                db: a.mongo_db.clone(),
                collection: a.mongo_collection.clone(),
            }),
        };
        if self.runtime == RuntimeChoice::Aci {
            let missing = a.missing_for_aci();
            if !missing.is_empty() {
                return Err(ConfigError::Missing(format!(
                    "--runtime aci needs {} (or use --runtime docker / process)",
                    missing.join(", ")
                )));
            }
        }
        Ok(Backends {
            store,
            runtime: self.runtime,
            data_dir: self.data_dir.clone(),
            worker_bin: self.worker_bin.clone(),
            containment: host_network_containment()?,
            azure: Some(self.azure.clone()),
        })
    }
}

impl AzureArgs {
    /// The settings the ACI runtime needs that are not set, by flag and variable.
    pub fn missing_for_aci(&self) -> Vec<&'static str> {
        [
            (
                "--subscription-id / EDA_SUBSCRIPTION_ID",
                &self.subscription_id,
            ),
            (
                "--resource-group / EDA_RESOURCE_GROUP",
                &self.resource_group,
            ),
            ("--location / EDA_LOCATION", &self.location),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(name, _)| name)
        .collect()
    }
}

impl CheckArgs {
    /// `handler check` looks at ACI and Cosmos DB both: every setting they need must be set.
    pub fn require(&self) -> Result<(), ConfigError> {
        let mut missing = self.azure.missing_for_aci();
        if self.azure.mongo_uri.is_empty() {
            missing.push("--mongo-uri / EDA_MONGO_URI");
        }
        match missing.is_empty() {
            true => Ok(()),
            false => Err(ConfigError::Missing(format!(
                "handler check needs {}",
                missing.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{local_args, Cli, Command, TaskNetwork};

    #[test]
    fn the_worker_is_looked_for_in_the_musl_target_dir_then_next_to_the_handler() {
        let exe = std::path::Path::new("/src/eda/target/release/handler");
        assert_eq!(
            worker_candidates_of(exe),
            [
                PathBuf::from("/src/eda/target/x86_64-unknown-linux-musl/release/worker"),
                PathBuf::from("/src/eda/target/release/worker"),
            ]
        );
        let dir = std::env::temp_dir().join(format!("eda-worker-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (musl, next) = (dir.join("musl-worker"), dir.join("worker"));
        let looked = || vec![musl.clone(), next.clone()];
        let e = first_file(looked()).unwrap_err().to_string();
        assert!(
            e.contains(&musl.display().to_string())
                && e.contains(&next.display().to_string())
                && e.contains("cargo xtask worker"),
            "the error says where it looked: {e}"
        );
        std::fs::write(&next, "").unwrap();
        assert_eq!(first_file(looked()).unwrap(), next);
        std::fs::write(&musl, "").unwrap();
        assert_eq!(first_file(looked()).unwrap(), musl, "the static one first");
        let missing = dir.join("nope");
        let e = find_worker(Some(&missing)).unwrap_err().to_string();
        assert!(
            e.contains("nope"),
            "a given path is not second-guessed: {e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn functions(flags: &[&str]) -> FunctionsArgs {
        let argv = ["handler", "functions", "--api-key", "k"]
            .iter()
            .chain(flags);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Functions(a)) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn functions_mode_runs_on_any_store_and_runtime_and_names_what_each_needs() {
        let b = functions(&[
            "--store",
            "sqlite",
            "--runtime",
            "docker",
            "--data-dir",
            "/d",
        ])
        .backends()
        .unwrap();
        assert!(
            matches!(&b.store, StoreTarget::Sqlite(p) if p == std::path::Path::new("/d/eda.db"))
        );
        assert_eq!(b.runtime, RuntimeChoice::Docker);
        assert_eq!(
            b.containment.network,
            TaskNetwork::Host,
            "to reach the host's URL"
        );
        assert!(b.containment.hardening.read_only, "still hardened");
        let e = functions(&[]).backends().unwrap_err().to_string();
        assert!(e.contains("--mongo-uri"), "{e}");
        let e = functions(&["--store", "sqlite"])
            .backends()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--subscription-id") && e.contains("--location"),
            "{e}"
        );
        let ok = functions(&[
            "--mongo-uri=mongodb://m",
            "--subscription-id=s",
            "--resource-group=r",
            "--location=l",
        ])
        .backends()
        .unwrap();
        assert!(matches!(ok.store, StoreTarget::Mongo(_)));
        assert_eq!(ok.runtime, RuntimeChoice::Aci);
        let local = local_args(&["handler".into(), "local".into(), "--runtime=aci".into()])
            .unwrap()
            .backends()
            .unwrap_err()
            .to_string();
        assert!(local.contains("functions"), "{local}");
        let Some(Command::Check(check)) = Cli::try_parse_from(["handler", "check", "--location=l"])
            .unwrap()
            .command
        else {
            unreachable!()
        };
        let e = check.require().unwrap_err().to_string();
        assert!(
            e.contains("--subscription-id")
                && e.contains("--resource-group")
                && e.contains("--mongo-uri")
                && !e.contains("--location"),
            "handler check names what it needs: {e}"
        );
    }
}
