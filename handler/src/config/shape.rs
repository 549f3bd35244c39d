//! The flags that bound the shape of tasks (both modes): which images a task may ask for, its
//! CPU and memory bounds, the per-key caps on running containers and the caps on queued tasks.
//! Resolved into [`ShapeSettings`] by [`ShapeArgs::resolve`].

use super::ConfigError;
use clap::Args;
use model::shape::{Bounds, QueueCaps};
use model::Resources;
use std::collections::BTreeMap;

/// Task shape and backpressure flags.
#[derive(Debug, Clone, Args)]
pub struct ShapeArgs {
    /// Images a task may ask for besides the worker image (always allowed); repeat or
    /// comma-separate. None by default: every task runs the worker image.
    #[arg(
        long = "allowed-image",
        env = "EDA_ALLOWED_IMAGES",
        value_delimiter = ','
    )]
    pub allowed_images: Vec<String>,
    /// Fewest CPU cores a task may ask for.
    #[arg(long, env = "EDA_MIN_CPU", default_value_t = 0.1)]
    pub min_cpu: f64,
    /// Most CPU cores a task may ask for.
    #[arg(long, env = "EDA_MAX_CPU", default_value_t = 4.0)]
    pub max_cpu: f64,
    /// Least memory a task may ask for, in MiB.
    #[arg(long, env = "EDA_MIN_MEMORY_MB", default_value_t = 64)]
    pub min_memory_mb: u32,
    /// Most memory a task may ask for, in MiB.
    #[arg(long, env = "EDA_MAX_MEMORY_MB", default_value_t = 16384)]
    pub max_memory_mb: u32,
    /// Most running containers of one concurrency key, for keys without an override (0: no
    /// cap but --concurrency).
    #[arg(long, env = "EDA_KEY_CAP", default_value_t = 0)]
    pub key_cap: u32,
    /// Per-key caps overriding --key-cap, as `key=N` (repeat or comma-separate; N=0: no cap).
    #[arg(long = "key-caps", env = "EDA_KEY_CAPS", value_delimiter = ',')]
    pub key_caps: Vec<String>,
    /// Most tasks waiting (Pending) in all; over it `POST /api/work` answers 429 and a foreign
    /// queue message is dead-lettered (0: no cap).
    #[arg(long, env = "EDA_MAX_QUEUED", default_value_t = 0)]
    pub max_queued: u64,
    /// Most tasks waiting (Pending) per concurrency key; as --max-queued (0: no cap).
    #[arg(long, env = "EDA_MAX_QUEUED_PER_KEY", default_value_t = 0)]
    pub max_queued_per_key: u64,
}

/// The cap on running containers of each concurrency key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyCaps {
    /// Cap of keys without an override (0: none).
    pub default: u32,
    /// Caps of named keys (0: none).
    pub overrides: BTreeMap<String, u32>,
}

impl KeyCaps {
    /// The cap of `key`, if it has one (tasks without a key have none).
    pub fn cap(&self, key: &str) -> Option<u32> {
        let n = self.overrides.get(key).copied().unwrap_or(self.default);
        (n > 0).then_some(n)
    }

    /// True when no key has a cap (the queue can skip the per-key count).
    pub fn none(&self) -> bool {
        self.default == 0 && self.overrides.values().all(|&n| n == 0)
    }
}

/// Resolved shape settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ShapeSettings {
    /// Images and sizes a task may ask for.
    pub bounds: Bounds,
    /// Running containers per key.
    pub key_caps: KeyCaps,
    /// Waiting tasks in all and per key.
    pub queue_caps: QueueCaps,
}

impl ShapeArgs {
    /// Checks the flags: bounds ordered and holding the default size, `key=N` overrides with
    /// valid keys, allowed images that are image references.
    pub fn resolve(
        &self,
        worker_image: &str,
        defaults: Resources,
    ) -> Result<ShapeSettings, ConfigError> {
        let bad = |m: String| Err(ConfigError::OutOfRange(m));
        if !(self.min_cpu > 0.0 && self.min_cpu <= self.max_cpu && self.max_cpu.is_finite()) {
            return bad("--min-cpu must be > 0 and at most --max-cpu".into());
        }
        if !(self.min_memory_mb >= 16 && self.min_memory_mb <= self.max_memory_mb) {
            return bad("--min-memory-mb must be >= 16 and at most --max-memory-mb".into());
        }
        if defaults.cpu < self.min_cpu || defaults.cpu > self.max_cpu {
            return bad("--cpu must be within --min-cpu..=--max-cpu".into());
        }
        if defaults.memory_mb < self.min_memory_mb || defaults.memory_mb > self.max_memory_mb {
            return bad("--memory-mb must be within --min-memory-mb..=--max-memory-mb".into());
        }
        let bounds = Bounds {
            worker_image: worker_image.to_string(),
            allowed_images: self
                .allowed_images
                .iter()
                .map(|i| i.trim().to_string())
                .filter(|i| !i.is_empty())
                .collect(),
            cpu: (self.min_cpu, self.max_cpu),
            memory_mb: (self.min_memory_mb, self.max_memory_mb),
        };
        for image in &bounds.allowed_images {
            if let Err(e) = model::shape::check_image(image, &bounds) {
                return bad(format!("--allowed-image {image:?}: {e}"));
            }
        }
        let mut overrides = BTreeMap::new();
        for pair in self
            .key_caps
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
        {
            let parsed = pair
                .split_once('=')
                .and_then(|(k, n)| Some((k.trim(), n.trim().parse::<u32>().ok()?)));
            let Some((key, n)) = parsed else {
                return bad(format!("--key-caps {pair:?}: use key=N"));
            };
            if let Err(e) = model::shape::check_key(key) {
                return bad(format!("--key-caps {pair:?}: {e}"));
            }
            overrides.insert(key.to_string(), n);
        }
        Ok(ShapeSettings {
            bounds,
            key_caps: KeyCaps {
                default: self.key_cap,
                overrides,
            },
            queue_caps: QueueCaps {
                max_queued: self.max_queued,
                max_queued_per_key: self.max_queued_per_key,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        shape: ShapeArgs,
    }

    const SIZE: Resources = Resources {
        cpu: 1.0,
        memory_mb: 1536,
    };

    fn resolve(flags: &[&str]) -> Result<ShapeSettings, ConfigError> {
        let argv = std::iter::once("x").chain(flags.iter().copied());
        Cli::try_parse_from(argv)
            .expect("flags parse")
            .shape
            .resolve("eda-worker:latest", SIZE)
    }

    #[test]
    fn defaults_cap_nothing() {
        let s = resolve(&[]).unwrap();
        assert!(s.key_caps.none());
        assert_eq!(s.key_caps.cap("any"), None);
        assert_eq!(s.queue_caps, QueueCaps::default());
        assert!(s.bounds.allowed_images.is_empty());
    }

    #[test]
    fn key_caps_override_the_default() {
        let s = resolve(&[
            "--key-cap=2",
            "--key-caps=big=5,free=0",
            "--allowed-image=a:1",
        ])
        .unwrap();
        assert_eq!(s.key_caps.cap("other"), Some(2));
        assert_eq!(s.key_caps.cap("big"), Some(5));
        assert_eq!(s.key_caps.cap("free"), None);
        assert_eq!(s.bounds.allowed_images, ["a:1"]);
    }

    #[test]
    fn bad_flags_are_refused_by_name() {
        for (flags, named) in [
            (&["--key-caps=x"][..], "--key-caps"),
            (&["--key-caps=BAD=1"][..], "--key-caps"),
            (&["--min-cpu=2", "--max-cpu=1"][..], "--min-cpu"),
            (&["--max-cpu=0.5"][..], "--cpu"),
            (&["--max-memory-mb=100"][..], "--memory-mb"),
            (&["--allowed-image=a b"][..], "--allowed-image"),
        ] {
            let e = resolve(flags).unwrap_err().to_string();
            assert!(e.contains(named), "{flags:?}: {e}");
        }
    }
}
