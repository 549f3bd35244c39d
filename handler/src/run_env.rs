//! The context a run gets in its environment (docs/API.md "The run's environment"): who it is
//! (`TASK_ID`, `ATTEMPT`, `MAX_ATTEMPTS`), the message that started it (`MESSAGE_ID`,
//! `ENQUEUED_AT`, `DELIVERY_COUNT`) and its shape (`KEY`, `PRIORITY`, `LABEL_<NAME>`). The same
//! list goes to every runtime (Docker, process, ACI) and through the warm pool's and the ACI
//! standby's hand-over, as it is part of the container spec.

use crate::spawn::Delivery;
use model::shape::{format_rfc3339_ms, label_var};
use model::Task;

/// What the run learns about the message that started its attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RunContext {
    /// The queue's id of the message.
    pub message_id: String,
    /// When the message was put on the queue (ms since the epoch).
    pub enqueued_at_ms: i64,
    /// 1 on the first delivery.
    pub delivery_count: u32,
}

impl RunContext {
    /// The context of delivery `d` of `task`'s message; without the queue's enqueue time, the
    /// task's acceptance time.
    pub fn of(d: &Delivery, task: &Task) -> RunContext {
        RunContext {
            message_id: d.message_id.clone(),
            enqueued_at_ms: d.enqueued_at_ms.unwrap_or(task.created_at_ms),
            delivery_count: d.delivery_count,
        }
    }

    /// The context when no delivery is at hand (a warm container's task handed over again
    /// after a restart): the task's own id as the message id (local mode's first message of a
    /// task has it), its acceptance time, one delivery.
    pub fn of_task(task: &Task) -> RunContext {
        RunContext {
            message_id: task.id.to_string(),
            enqueued_at_ms: task.created_at_ms,
            delivery_count: 1,
        }
    }
}

/// The context variables of `task`'s current attempt (`KEY` only when it has a key).
pub fn context_env(task: &Task, ctx: &RunContext) -> Vec<(String, String)> {
    let mut env = vec![
        ("MAX_ATTEMPTS".to_string(), task.max_attempts.to_string()),
        ("MESSAGE_ID".to_string(), ctx.message_id.clone()),
        (
            "ENQUEUED_AT".to_string(),
            format_rfc3339_ms(ctx.enqueued_at_ms),
        ),
        ("DELIVERY_COUNT".to_string(), ctx.delivery_count.to_string()),
        ("PRIORITY".to_string(), task.priority.to_string()),
    ];
    if let Some(key) = &task.key {
        env.push(("KEY".to_string(), key.clone()));
    }
    for (name, value) in &task.labels {
        env.push((label_var(name), value.clone()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{Resources, TaskId};

    #[test]
    fn the_context_names_the_task_the_message_and_the_shape() {
        let r = Resources {
            cpu: 1.0,
            memory_mb: 256,
        };
        let mut t = Task::new(TaskId::parse("t1").unwrap(), "w".into(), r, 3, 60, 5);
        t.priority = -2;
        t.key = Some("tenant-a".into());
        t.labels.insert("team".into(), "blue".into());
        let d = Delivery {
            message_id: "m-9".into(),
            body: String::new(),
            delivery_count: 2,
            enqueued_at_ms: Some(1_796_291_116_500),
        };
        let env: std::collections::BTreeMap<_, _> = context_env(&t, &RunContext::of(&d, &t))
            .into_iter()
            .collect();
        assert_eq!(env["MAX_ATTEMPTS"], "3");
        assert_eq!(env["MESSAGE_ID"], "m-9");
        assert_eq!(env["ENQUEUED_AT"], "2026-12-03T09:45:16.500Z");
        assert_eq!(env["DELIVERY_COUNT"], "2");
        assert_eq!(env["PRIORITY"], "-2");
        assert_eq!(env["KEY"], "tenant-a");
        assert_eq!(env["LABEL_TEAM"], "blue");
        let plain = Task::new(TaskId::parse("t2").unwrap(), "w".into(), r, 1, 60, 7);
        let env: std::collections::BTreeMap<_, _> =
            context_env(&plain, &RunContext::of_task(&plain))
                .into_iter()
                .collect();
        assert!(!env.contains_key("KEY"));
        assert_eq!(env["MESSAGE_ID"], "t2");
        assert_eq!(env["ENQUEUED_AT"], "1970-01-01T00:00:00.007Z");
    }
}
