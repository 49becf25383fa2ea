//! The database crashes mid-ingest: PostgreSQL's postmaster is killed with SIGKILL while a client
//! streams batches through a real server process, then started again. Every acknowledged batch
//! must be there, no batch partly, and the server must recover by itself.
//!
//! The test runs its own throwaway cluster (`initdb` on a free port), never the machine's; it is
//! skipped, with a line saying so, where PostgreSQL's server binaries are not installed.

mod common;

use common::process::{Server, get_json, new_run};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// PostgreSQL's server programs, from PATH or Debian's versioned directory.
fn pg_bin(name: &str) -> Option<PathBuf> {
    if let Ok(out) = Command::new("which").arg(name).output()
        && out.status.success()
    {
        return Some(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    found.pop()
}

/// A cluster in a temporary directory, run as the `postgres` user when the test runs as root
/// (the server refuses root).
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    pg_ctl: PathBuf,
    as_postgres: bool,
}

impl Cluster {
    fn command(&self, program: &Path) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn init() -> Option<Cluster> {
        let (initdb, pg_ctl) = (pg_bin("initdb")?, pg_bin("pg_ctl")?);
        let dir = tempfile::tempdir().ok()?;
        let as_postgres = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the cluster directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let cluster = Cluster {
            dir,
            port,
            pg_ctl,
            as_postgres,
        };
        let status = cluster
            .command(&initdb)
            .args(["-D"])
            .arg(cluster.data())
            .args(["-U", "postgres", "-A", "trust"])
            .stdout(std::process::Stdio::null())
            .status()
            .ok()?;
        assert!(status.success(), "initdb failed");
        Some(cluster)
    }

    /// Starts the server; after a crash it may have to wait for the dead postmaster's backends
    /// to notice and exit before the shared memory is free again.
    fn start(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !self.try_start() {
            assert!(std::time::Instant::now() < deadline, "pg_ctl start failed");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn try_start(&self) -> bool {
        self.command(&self.pg_ctl)
            .args(["-D"])
            .arg(self.data())
            .args(["-w", "-l"])
            .arg(self.dir.path().join("log"))
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1",
                self.port,
                self.dir.path().display()
            ))
            .arg("start")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// SIGKILL to the postmaster: its backends die with it, uncommitted work is lost.
    fn crash(&self) {
        let pid_file = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap();
        let pid = pid_file.lines().next().unwrap().trim().to_owned();
        let status = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
        assert!(status.success());
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self
            .command(&self.pg_ctl)
            .args(["-D"])
            .arg(self.data())
            .args(["-m", "immediate", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Batch `i`: one request of its own with `STEPS` steps, so its rows can be counted.
const STEPS: usize = 200;

fn batch(i: usize) -> String {
    let steps: Vec<_> = (0..STEPS)
        .map(|k| {
            json!({"function_ancestry": {"function_id": "f", "function_name": "agent"},
                   "payload": {"event_type": if k % 2 == 0 { "LLM_START" } else { "LLM_END" },
                               "event_timestamp": (i * STEPS + k) as f64, "UUID": format!("b{i}-{}", k / 2),
                               "name": "m", "data": {"input": "x".repeat(200)}}})
        })
        .collect();
    json!([{"request_number": i, "intermediate_steps": steps}]).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_crashing_mid_ingest_loses_no_acknowledged_batch() {
    let Some(cluster) = Cluster::init() else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "skipping the database-crash test: PostgreSQL's initdb and pg_ctl are not installed"
        );
        return;
    };
    cluster.start();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let server = Server::spawn(&[("DATABASE_URL", &cluster.url())]);
    server.ready(&client).await;
    let run = new_run(&client, &server.base).await;
    let url = format!("{}/v1/runs/{run}/steps", server.base);

    // Two clients stream batches; the database is killed once five are acknowledged, while
    // others are in flight, and started again a second later. Ingest goes on until ten more
    // have been acknowledged after the restart.
    let acknowledged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut posters = Vec::new();
    for p in 0..2usize {
        let (client, url) = (client.clone(), url.clone());
        let (acknowledged, refused, stop) = (acknowledged.clone(), refused.clone(), stop.clone());
        posters.push(tokio::spawn(async move {
            let mut i = p;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(batch(i))
                    .send()
                    .await
                    .expect("the server answers every request");
                match r.status().as_u16() {
                    200 => acknowledged.lock().unwrap().push(i),
                    503 => {
                        assert!(r.headers().contains_key("retry-after"));
                        refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    other => panic!("an outage is a 503, got {other}"),
                }
                i += 2;
            }
        }));
    }
    let acks = || acknowledged.lock().unwrap().len();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while acks() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cluster.crash();
    let at_crash = acks();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.start();
    while acks() < at_crash + 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "ingest did not recover"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for p in posters {
        p.await.unwrap();
    }
    // How many batches met the outage (a 503 with Retry-After) depends on timing; whether a
    // batch in flight at the kill commits first is up to the dying backend.
    let _ = refused.load(std::sync::atomic::Ordering::SeqCst);
    server.ready(&client).await;
    let acknowledged = acknowledged.lock().unwrap().clone();

    // What the database holds: per batch (request number), all of its steps or none.
    let requests = get_json(&client, &format!("{}/v1/runs/{run}/requests", server.base)).await;
    let mut stored = std::collections::BTreeMap::new();
    for r in requests.as_array().unwrap() {
        let n = r["request_number"].as_u64().unwrap() as usize;
        stored.insert(n, r["intermediate_steps"].as_array().unwrap().len());
    }
    for n in &acknowledged {
        assert_eq!(stored.get(n), Some(&STEPS), "acknowledged batch {n} lost");
    }
    for (n, count) in &stored {
        assert_eq!(*count, STEPS, "batch {n} stored partly");
    }
    let view = get_json(&client, &format!("{}/v1/runs/{run}", server.base)).await;
    assert_eq!(
        view["step_count"].as_u64().unwrap() as usize,
        stored.len() * STEPS,
        "the run's counts agree with its steps"
    );
    drop(server);
}
