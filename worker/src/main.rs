//! The worker: runs inside every task container.
//!
//! Reports `InProgress` to the handler, does the work (the built-in demo, or the command given
//! after `--` with the message in `MESSAGE`), reports `Done` or `Failed` with the exit code, and
//! exits with that code. It holds only its own task's token and never prints it.
//!
//! # Layout
//!
//! - `args`: the command line and the environment, read in one place.
//! - `callback`: state reports with retries and backoff.
//! - `work`: the demo and the user's command.
//! - `result`: the `RESULT_PATH` file the work may write, read after it exits.
//! - `pool`: warm pool mode, where the task arrives over HTTP instead of in the environment.
//! - `standby`: a worker started ahead of its task (ACI standby pool) waits for its assignment.

mod args;
mod callback;
mod pool;
mod result;
mod standby;
mod work;

use args::{Args, Env, USAGE};
use callback::{Backoff, Reporter};
use model::{ReportedState, StateReport};

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("worker: {e}");
            std::process::exit(2);
        }
    };
    if args.help {
        println!("{USAGE}");
        return;
    }
    if let Some(dir) = args::standby_dir() {
        let e = standby::wait_and_run(&dir);
        eprintln!("worker: cannot start the assigned work: {e}");
        std::process::exit(1);
    }
    let env = Env::from_process();
    let env = match &env.pool {
        None => env,
        Some(p) => match pool::wait(p) {
            Ok(assignment) => env.assigned(assignment),
            Err(e) => {
                eprintln!("worker: {e}");
                std::process::exit(pool::REFUSED);
            }
        },
    };
    std::process::exit(run(&args, env));
}

/// Reports, works, reports; returns the work's exit code.
fn run(args: &Args, env: Env) -> i32 {
    let reporter = Reporter::new(
        env.callback_url.clone(),
        env.token.clone(),
        Backoff::default(),
    );
    reporter.send(&StateReport {
        state: ReportedState::InProgress,
        container: env.container.clone(),
        exit_code: None,
        reason: None,
        first_output_at_ms: None,
        exited_at_ms: None,
        result: None,
    });
    let finished = if args.command.is_empty() {
        work::demo(&env.message, env.demo_duration(args))
    } else {
        let result = result::ResultFile::create(env.task_id.as_deref());
        work::run(&args.command, &env.assigned, result.as_ref())
    };
    let state = match finished.exit_code {
        0 => ReportedState::Done,
        _ => ReportedState::Failed,
    };
    reporter.send(&StateReport {
        state,
        container: env.container.clone(),
        exit_code: Some(i64::from(finished.exit_code)),
        reason: finished.reason,
        first_output_at_ms: finished.first_output_at_ms,
        exited_at_ms: finished.exited_at_ms,
        result: finished.result,
    });
    finished.exit_code.clamp(0, 255)
}
