//! Runs the real worker binary against a tiny real HTTP server on port 0 and checks what it
//! reports, how it authenticates, its exit code, and that its token never shows in its output.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

const TOKEN: &str = "tok-3f9a1c77e2b44d0d";

/// One request the server saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    auth: Option<String>,
    body: serde_json::Value,
}

/// A one-route HTTP/1.1 server: records every request and answers with the next status from
/// `statuses` (the last one repeats).
struct Server {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(statuses: &[u16]) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/api/tasks/t1/state",
            listener.local_addr().unwrap()
        );
        let seen = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(statuses.to_vec()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let (s, st) = (s.clone(), statuses.clone());
                std::thread::spawn(move || serve(conn.unwrap(), &s, &st));
            }
        });
        Server { url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, seen: &Mutex<Vec<Seen>>, statuses: &Mutex<Vec<u16>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut conn = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        let (mut len, mut auth) = (0usize, None);
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (name, value) = h.split_once(':').unwrap();
            match name.to_ascii_lowercase().as_str() {
                "content-length" => len = value.trim().parse().unwrap(),
                "authorization" => auth = Some(value.trim().to_string()),
                _ => {}
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        seen.lock().unwrap().push(Seen {
            path,
            auth,
            body: serde_json::from_slice(&body).unwrap(),
        });
        let status = {
            let mut st = statuses.lock().unwrap();
            if st.len() > 1 {
                st.remove(0)
            } else {
                st[0]
            }
        };
        write!(conn, "HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n").unwrap();
    }
}

fn worker(callback: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_worker"));
    cmd.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("MESSAGE", "hello world")
        .env("TASK_ID", "t1")
        .env("TASK_TOKEN", TOKEN)
        .env("CONTAINER_NAME", "eda-t1-1")
        .args(args);
    if let Some(url) = callback {
        cmd.env("CALLBACK_URL", url);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn assert_no_token(o: &Output) {
    let (out, err) = text(o);
    assert!(!out.contains(TOKEN), "token in stdout: {out}");
    assert!(!err.contains(TOKEN), "token in stderr: {err}");
}

#[test]
fn demo_reports_in_progress_then_done() {
    let server = Server::start(&[204]);
    let out = worker(Some(&server.url), &["--seconds", "1"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(text(&out).0.contains("sha256 "), "{:?}", text(&out));
    assert_no_token(&out);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    for s in &seen {
        assert_eq!(s.path, "/api/tasks/t1/state");
        assert_eq!(s.auth.as_deref(), Some(format!("Bearer {TOKEN}").as_str()));
    }
    assert_eq!(
        seen[0].body,
        serde_json::json!({"state": "InProgress", "container": "eda-t1-1"})
    );
    assert_eq!(seen[1].body["state"], "Done");
    assert_eq!(seen[1].body["exit_code"], 0);
}

#[test]
fn command_gets_the_message_not_the_token_and_its_exit_code_passes_through() {
    let server = Server::start(&[204]);
    let script = "echo \"msg=$MESSAGE id=$TASK_ID tok=$TASK_TOKEN\"; echo to-stderr >&2; exit 3";
    let out = worker(Some(&server.url), &["--", "sh", "-c", script]);
    assert_eq!(out.status.code(), Some(3));
    let (stdout, stderr) = text(&out);
    assert!(stdout.contains("msg=hello world id=t1 tok=\n"), "{stdout}");
    assert!(stderr.contains("to-stderr"), "{stderr}");
    assert_no_token(&out);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].body["state"], "Failed");
    assert_eq!(seen[1].body["exit_code"], 3);
    assert_eq!(seen[1].body["reason"], "exit code 3");
}

#[test]
fn a_signal_is_128_plus_its_number() {
    let server = Server::start(&[204]);
    let out = worker(Some(&server.url), &["--", "sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status.code(), Some(137));
    let seen = server.seen();
    assert_eq!(seen[1].body["exit_code"], 137);
    assert_eq!(seen[1].body["reason"], "killed by signal 9");
}

#[test]
fn server_errors_are_retried() {
    let server = Server::start(&[503, 500, 204]);
    let out = worker(Some(&server.url), &["--", "true"]);
    assert_eq!(out.status.code(), Some(0));
    let seen = server.seen();
    let states: Vec<_> = seen.iter().map(|s| s.body["state"].clone()).collect();
    assert_eq!(states, ["InProgress", "InProgress", "InProgress", "Done"]);
    assert!(text(&out).1.contains("HTTP 503"), "{:?}", text(&out));
    assert_no_token(&out);
}

#[test]
fn client_errors_are_not_retried() {
    let server = Server::start(&[401]);
    let out = worker(Some(&server.url), &["--", "sh", "-c", "exit 5"]);
    assert_eq!(out.status.code(), Some(5), "the work still runs");
    assert_eq!(server.seen().len(), 2, "one try per report");
    assert!(text(&out).1.contains("HTTP 401"));
    assert_no_token(&out);
}

#[test]
fn without_a_callback_it_just_works() {
    let out = worker(None, &["--seconds", "0"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out).0.contains("sha256 "));
}

#[test]
fn bad_arguments_exit_2_with_usage() {
    let out = worker(None, &["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("usage:"));
}

#[test]
fn an_https_callback_speaks_tls_and_never_sends_the_token_in_clear() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://{}/api/tasks/t1/state",
        listener.local_addr().unwrap()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
        .env_clear()
        .env("CALLBACK_URL", &url)
        .env("TASK_TOKEN", TOKEN)
        .args(["--seconds", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut hello = vec![0u8; 5];
    conn.read_exact(&mut hello).unwrap();
    let len = u16::from_be_bytes([hello[3], hello[4]]) as usize;
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // A TLS record of type handshake (22) whose first message is a ClientHello (1).
    assert_eq!((hello[0], hello[1], body[0]), (22, 3, 1), "{hello:?}");
    let clear = String::from_utf8_lossy(&body);
    assert!(!clear.contains(TOKEN));
}

#[test]
fn the_result_file_goes_with_the_final_report_and_is_cleaned_up() {
    let tmp = std::env::temp_dir().join(format!("eda-worker-cb-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let run = |script: &str| {
        let server = Server::start(&[204]);
        let out = Command::new(env!("CARGO_BIN_EXE_worker"))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("TMPDIR", &tmp)
            .env("TASK_ID", "t1")
            .env("TASK_TOKEN", TOKEN)
            .env("CALLBACK_URL", &server.url)
            .args(["--", "sh", "-c", script])
            .output()
            .unwrap();
        (out, server.seen())
    };
    let (out, seen) = run(
        r#"case "$RESULT_PATH" in "$TMPDIR"/eda-result-t1-*/result) printf 'r=%s' 7 > "$RESULT_PATH";; esac"#,
    );
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert_eq!(seen.len(), 2);
    assert!(seen[0].body.get("result").is_none(), "not with InProgress");
    assert_eq!(
        seen[1].body["result"],
        serde_json::json!({"text": "r=7", "truncated": false, "bytes": 3})
    );
    let (_, seen) = run("exit 0");
    assert!(
        seen[1].body.get("result").is_none(),
        "no file, no result: {:?}",
        seen[1]
    );
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(
        left.is_empty(),
        "the result directories are removed: {left:?}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}
