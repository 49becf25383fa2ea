//! The real `agentprof` binary as a child process, for tests of signals, restarts and startup.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    pub child: Child,
    pub base: String,
    pub port: u16,
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free loopback port")
        .local_addr()
        .expect("its address")
        .port()
}

impl Server {
    /// `agentprof serve` on a free loopback port, with `env` set (and DATABASE_URL removed
    /// unless `env` sets it).
    pub fn spawn(env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentprof"));
        // AGENTPROF_TEST_SERVER_LOG=path keeps the servers' logs, for when a test fails.
        let log = std::env::var_os("AGENTPROF_TEST_SERVER_LOG").and_then(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        cmd.args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log.map_or_else(Stdio::null, Stdio::from));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn agentprof");
        Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
        }
    }

    /// Polls `/readyz` until it answers 200 (a deadline, not a sleep).
    pub async fn ready(&self, client: &reqwest::Client) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !client
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "server did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM, then waits: the exit must be clean.
    pub fn stop(mut self) {
        self.signal("-TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "clean shutdown, got {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET url`; its JSON body, which must come with a 200.
pub async fn get_json(client: &reqwest::Client, url: &str) -> serde_json::Value {
    let r = client.get(url).send().await.expect("GET");
    assert_eq!(r.status(), 200, "GET {url}");
    r.json().await.expect("a JSON body")
}

/// `POST {base}/v1/runs` with a JSON `body` (gzip when it starts like gzip); the created run.
pub async fn post_run(
    client: &reqwest::Client,
    base: &str,
    body: impl Into<reqwest::Body>,
) -> serde_json::Value {
    let body: reqwest::Body = body.into();
    let gzip = body
        .as_bytes()
        .is_some_and(|b| b.starts_with(&[0x1f, 0x8b]));
    let mut req = client
        .post(format!("{base}/v1/runs"))
        .header("content-type", "application/json");
    if gzip {
        req = req.header("content-encoding", "gzip");
    }
    let r = req.body(body).send().await.expect("POST /v1/runs");
    assert_eq!(r.status(), 201, "POST {base}/v1/runs");
    r.json().await.expect("a JSON body")
}

/// A new empty run on `base`; its id.
pub async fn new_run(client: &reqwest::Client, base: &str) -> String {
    post_run(client, base, "{}").await["id"]
        .as_str()
        .expect("an id")
        .to_owned()
}
