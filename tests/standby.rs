//! Reads from a real streaming standby: a throwaway primary and standby pair made with the
//! machine's PostgreSQL binaries (`initdb`, `pg_basebackup -R`), never its own cluster.
//!
//! Every read right after an acknowledged write must see it, whether the standby has caught up,
//! has its replay paused (so it cannot), or is stopped; and the reads that could go to the
//! standby must show up in the standby's own `pg_stat_database`.

mod common;

use common::process::{Server, free_port, get_json, post_run};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The directory of the newest PostgreSQL server binaries on the machine, if any.
fn pg_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").is_file() && d.join("pg_basebackup").is_file())
        .collect();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
}

/// A primary and its hot standby in one temporary directory; both stopped when dropped.
struct Pair {
    bin: PathBuf,
    dir: tempfile::TempDir,
    primary_port: u16,
    standby_port: u16,
}

impl Pair {
    /// PostgreSQL refuses to run as root, so as root the servers run as `postgres`.
    fn run(&self, program: &str, args: &[&str]) {
        let exe = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().expect("run a PostgreSQL binary");
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(bin: PathBuf) -> Pair {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success());
        }
        let pair = Pair {
            bin,
            primary_port: free_port(),
            standby_port: free_port(),
            dir,
        };
        let primary = pair.data("primary");
        let p = primary.to_str().unwrap();
        pair.run(
            "initdb",
            &["-D", p, "-U", "postgres", "-A", "trust", "--no-sync"],
        );
        append(
            &primary.join("postgresql.conf"),
            &format!(
                "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
                 wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\nfsync = off\n",
                pair.primary_port,
                pair.dir.path().display()
            ),
        );
        append(
            &primary.join("pg_hba.conf"),
            "host replication all 127.0.0.1/32 trust\n",
        );
        pair.pg_ctl("primary", "start");
        let standby = pair.data("standby");
        pair.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &pair.primary_port.to_string(),
                "-U",
                "postgres",
                "-D",
                standby.to_str().unwrap(),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        append(
            &standby.join("postgresql.conf"),
            &format!("port = {}\n", pair.standby_port),
        );
        pair.pg_ctl("standby", "start");
        pair
    }

    fn data(&self, node: &str) -> PathBuf {
        self.dir.path().join(node)
    }

    fn pg_ctl(&self, node: &str, action: &str) {
        let data = self.data(node);
        let log = self.dir.path().join(format!("{node}.log"));
        let mut args = vec![
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-w",
            action,
        ];
        if action == "stop" {
            args.extend(["-m", "immediate"]);
        }
        self.run("pg_ctl", &args);
    }

    fn url(&self, port: u16) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/postgres")
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for node in ["standby", "primary"] {
            if self.data(node).join("postmaster.pid").exists() {
                let data = self.data(node);
                let exe = self.bin.join("pg_ctl");
                let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
                let _ = if is_root() {
                    Command::new("runuser")
                        .args(["-u", "postgres", "--"])
                        .arg(exe)
                        .args(args)
                        .output()
                } else {
                    Command::new(exe).args(args).output()
                };
            }
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

async fn sql(url: &str, statement: &str) -> Vec<sqlx::postgres::PgRow> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(statement.to_owned()))
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

/// Rows the standby's own backends have read from its tables (what `pg_stat_database` counts
/// for the database agentprof uses).
async fn rows_read_on(url: &str) -> i64 {
    use sqlx::Row;
    let rows = sql(
        url,
        "SELECT (tup_returned + tup_fetched)::bigint FROM pg_stat_database WHERE datname = 'postgres'",
    )
    .await;
    rows[0].get(0)
}

/// One request of two steps (an LLM call), numbered `i`.
fn batch(i: usize) -> String {
    json!([{
        "request_number": i,
        "intermediate_steps": [
            {"payload": {"event_type": "LLM_START", "event_timestamp": 1000.0 + i as f64, "UUID": format!("c{i}"), "name": "m"}},
            {"payload": {"event_type": "LLM_END", "event_timestamp": 1000.5 + i as f64, "UUID": format!("c{i}"), "name": "m",
                         "usage_info": {"token_usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}}}
        ]
    }])
    .to_string()
}

/// Writes request `i` to `run` and reads it back at once: the stored request list, the profiler
/// metrics and the run list must all include the write.
async fn write_then_read(client: &reqwest::Client, base: &str, run: &str, name: &str, i: usize) {
    let r = client
        .post(format!("{base}/v1/runs/{run}/steps"))
        .header("content-type", "application/json")
        .body(batch(i))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "append {i}");
    let requests = get_json(client, &format!("{base}/v1/runs/{run}/requests")).await;
    let numbers: Vec<i64> = requests
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["request_number"].as_i64().unwrap())
        .collect();
    assert!(numbers.contains(&(i as i64)), "request {i} not read back");
    let stats = get_json(client, &format!("{base}/v1/runs/{run}/stats")).await;
    assert_eq!(
        stats["throughput"]["requests"].as_i64(),
        Some(numbers.len() as i64),
        "stats after write {i}: {stats}"
    );
    let list = get_json(client, &format!("{base}/v1/runs?name={name}")).await;
    let listed = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == run)
        .unwrap_or_else(|| panic!("run not listed after write {i}: {list}"));
    assert_eq!(
        listed["step_count"].as_i64(),
        Some(2 * numbers.len() as i64)
    );
}

/// `agentprof_reads_total` for one target, summed over reasons.
async fn reads_to(client: &reqwest::Client, base: &str, target: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| {
            l.starts_with("agentprof_reads_total{") && l.contains(&format!("target=\"{target}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_from_a_standby_see_every_acknowledged_write() {
    let Some(bin) = pg_bin_dir() else {
        eprintln!("skipping: no PostgreSQL server binaries under /usr/lib/postgresql");
        return;
    };
    let pair = Pair::start(bin);
    let (primary, standby) = (pair.url(pair.primary_port), pair.url(pair.standby_port));
    let server = Server::spawn(&[
        ("DATABASE_URL", &primary),
        ("AGENTPROF_READ_DATABASE_URL", &standby),
    ]);
    let client = reqwest::Client::new();
    server.ready(&client).await;
    let base = &server.base;
    let name = "standby-check";
    let run = post_run(&client, base, json!({ "name": name }).to_string()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // 1. A caught-up standby serves the reads, each of which sees the write just acknowledged.
    let before = rows_read_on(&standby).await;
    for i in 0..20 {
        write_then_read(&client, base, &run, name, i).await;
    }
    assert!(reads_to(&client, base, "standby").await >= 20.0);
    // The standby's statistics reach pg_stat_database when its backends go idle (within a
    // second or so); 20 reads of a growing run read hundreds of rows there.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let read = rows_read_on(&standby).await - before;
        if read >= 400 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby's pg_stat_database shows only {read} rows read"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ready = get_json(&client, &format!("{base}/readyz")).await;
    assert_eq!(ready["standbys"][0]["up"], true, "{ready}");

    // 2. A standby that cannot replay (paused) never serves a stale read: the reads wait their
    // bound and go to the primary.
    sql(&standby, "SELECT pg_wal_replay_pause()").await;
    let primary_before = reads_to(&client, base, "primary").await;
    for i in 20..25 {
        write_then_read(&client, base, &run, name, i).await;
    }
    assert!(reads_to(&client, base, "primary").await >= primary_before + 5.0);
    sql(&standby, "SELECT pg_wal_replay_resume()").await;

    // 3. A stopped standby: reads still answer, from the primary, and readiness says so.
    pair.pg_ctl("standby", "stop");
    for i in 25..30 {
        write_then_read(&client, base, &run, name, i).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(r.status(), 200, "the primary alone keeps the server ready");
        let ready: Value = r.json().await.unwrap();
        if ready["standbys"][0]["up"] == false {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "readiness still shows the stopped standby up: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("agentprof_standby_up{") && l.ends_with(" 0")),
        "the Prometheus text shows the standby down"
    );
    server.stop();
}

#[tokio::test]
async fn standbys_need_a_postgres_primary() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agentprof"))
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env_remove("DATABASE_URL")
        .env(
            "AGENTPROF_READ_DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/postgres",
        )
        .env("AGENTPROF_DATA_DIR", data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--read-database-url"), "{stderr}");
}
