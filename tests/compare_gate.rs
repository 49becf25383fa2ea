//! `agentprof compare` as a CI job runs it: the binary on two files, its exit status and what it
//! prints. A run against itself passes; against a copy whose LLM calls each take half a second
//! longer it fails, naming the latency; thresholds, formats and errors as documented.

mod common;

use common::process::{Server, post_run};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn compare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentprof"))
        .arg("compare")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("an exit status")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every LLM_END of `v` half a second later: each LLM call takes 0.5 s longer.
fn slow_llm_calls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("event_type").and_then(Value::as_str) == Some("LLM_END")
                && let Some(t) = m.get("event_timestamp").and_then(Value::as_f64)
            {
                m.insert("event_timestamp".into(), (t + 0.5).into());
            }
            m.values_mut().for_each(slow_llm_calls);
        }
        Value::Array(a) => a.iter_mut().for_each(slow_llm_calls),
        _ => {}
    }
}

/// The `medium_50` case as given, and a copy with slower LLM calls, in a fresh folder.
fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let case = common::fixtures().join("cases/medium_50");
    let bytes = common::read_maybe_gz(&case, "input.json").expect("medium_50's input");
    let mut doc: Value = serde_json::from_slice(&bytes).unwrap();
    let baseline = case.join("input.json.gz");
    slow_llm_calls(&mut doc);
    let slower = dir.join("slower.json");
    std::fs::write(&slower, serde_json::to_vec(&doc).unwrap()).unwrap();
    (baseline, slower)
}

#[test]
fn a_run_against_itself_passes_and_slower_llm_calls_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (base, slower) = inputs(dir.path());
    let (base, slower) = (base.to_str().unwrap(), slower.to_str().unwrap());

    let same = compare(&[base, base]);
    assert_eq!(code(&same), 0, "{}", stdout(&same));
    assert!(
        stdout(&same).contains("no metric is worse"),
        "{}",
        stdout(&same)
    );

    let worse = compare(&[base, slower]);
    let text = stdout(&worse);
    assert_eq!(code(&worse), 1, "{text}");
    // The calls that end a request also lengthen it: its run time may be worse too.
    assert!(text.contains("worse: llm_latency"), "{text}");
    let line = text.lines().find(|l| l.starts_with("llm_latency")).unwrap();
    assert!(line.contains("WORSE") && line.contains("+0.5000"), "{line}");

    // JSON: the same decision, with every figure.
    let json = compare(&[base, slower, "--format", "json"]);
    assert_eq!(code(&json), 1);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["worse"][0], "llm_latency");
    assert_eq!(report["pairing"], "request_number");
    let llm = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["metric"] == "llm_latency")
        .unwrap();
    assert!(
        (llm["difference"].as_f64().unwrap() - 0.5).abs() < 1e-9,
        "{llm}"
    );
    assert_eq!(llm["verdict"], "worse");

    // Markdown: a heading and a table whose rows have the header's columns.
    let md = compare(&[base, slower, "--format", "markdown"]);
    let md = stdout(&md);
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
    assert!(
        md.starts_with("### ❌ agentprof compare: ") && md.contains("worse: llm_latency"),
        "{md}"
    );
    assert!(
        rows[0].starts_with("| metric |") && rows[1].starts_with("|---"),
        "{md}"
    );
    let columns = rows[0].matches('|').count();
    assert!(rows.len() >= 3 && rows.iter().all(|r| r.matches('|').count() == columns));
    assert!(
        md.contains("| `llm_latency` |") && md.contains("**worse**"),
        "{md}"
    );
}

/// Every LLM_END of `v` with twice its completion tokens.
fn wordier_llm_calls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("event_type").and_then(Value::as_str) == Some("LLM_END")
                && let Some(t) = m
                    .get_mut("usage_info")
                    .and_then(|u| u.get_mut("token_usage"))
            {
                let c = t["completion_tokens"].as_i64().unwrap();
                t["completion_tokens"] = (2 * c).into();
                t["total_tokens"] = (t["prompt_tokens"].as_i64().unwrap() + 2 * c).into();
            }
            m.values_mut().for_each(wordier_llm_calls);
        }
        Value::Array(a) => a.iter_mut().for_each(wordier_llm_calls),
        _ => {}
    }
}

#[test]
fn prices_make_cost_a_metric_of_files() {
    let dir = tempfile::tempdir().unwrap();
    let case = common::fixtures().join("cases/medium_50");
    let base = case.join("input.json.gz");
    let mut doc: Value =
        serde_json::from_slice(&common::read_maybe_gz(&case, "input.json").unwrap()).unwrap();
    wordier_llm_calls(&mut doc);
    let wordier = dir.path().join("wordier.json");
    std::fs::write(&wordier, serde_json::to_vec(&doc).unwrap()).unwrap();
    let prices = dir.path().join("prices.yaml");
    std::fs::write(
        &prices,
        "models:\n  meta/llama-3.1-70b-instruct: {input: 0.88, output: 0.88}\n  \
         meta/llama-3.1-8b-instruct: {input: 0.18, output: 0.18}\n",
    )
    .unwrap();
    let (base, wordier, prices) = (
        base.to_str().unwrap(),
        wordier.to_str().unwrap(),
        prices.to_str().unwrap(),
    );

    let same = compare(&[base, base, "--prices", prices, "--metric", "cost"]);
    assert_eq!(code(&same), 0, "{}", stdout(&same));
    let worse = compare(&[base, wordier, "--prices", prices, "--format", "json"]);
    assert_eq!(code(&worse), 1, "{}", stdout(&worse));
    let report: Value = serde_json::from_slice(&worse.stdout).unwrap();
    assert!(
        report["worse"].as_array().unwrap().contains(&json!("cost")),
        "{report}"
    );

    // No cost without prices, and none when a model has no price: an error, not a pass.
    let none = compare(&[base, wordier, "--metric", "cost"]);
    assert_eq!(code(&none), 2);
    let partial = dir.path().join("partial.json");
    std::fs::write(
        &partial,
        r#"{"models": {"meta/llama-3.1-70b-instruct": {"input": 1, "output": 1}}}"#,
    )
    .unwrap();
    let part = compare(&[
        base,
        wordier,
        "--prices",
        partial.to_str().unwrap(),
        "--max-regression",
        "cost=5",
    ]);
    assert_eq!(code(&part), 2);
    let err = String::from_utf8_lossy(&part.stderr);
    assert!(err.contains("meta/llama-3.1-8b-instruct"), "{err}");
    // A table with a mistake stops the command before it reads anything.
    std::fs::write(&partial, "models:\n  m: {input: -1, output: 1}\n").unwrap();
    let bad = compare(&[base, base, "--prices", partial.to_str().unwrap()]);
    assert_eq!(code(&bad), 2);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/models/m/input"));

    // `analyze --prices` writes the cost into stats.json: the tokens times the prices.
    let out = dir.path().join("out");
    let analyzed = Command::new(env!("CARGO_BIN_EXE_agentprof"))
        .args([
            "analyze",
            base,
            "--out",
            out.to_str().unwrap(),
            "--prices",
            prices,
        ])
        .output()
        .unwrap();
    assert!(analyzed.status.success(), "{analyzed:?}");
    let stats: Value =
        serde_json::from_slice(&std::fs::read(out.join("stats.json")).unwrap()).unwrap();
    // Expected from the input's own LLM_END steps, apart from the binary's code.
    let input: Value =
        serde_json::from_slice(&common::read_maybe_gz(&case, "input.json").unwrap()).unwrap();
    let tokens = common::tokens_by_model(&input);
    let mut expected = 0.0;
    for (model, price) in [
        ("meta/llama-3.1-70b-instruct", 0.88),
        ("meta/llama-3.1-8b-instruct", 0.18),
    ] {
        let [_, prompt, _, completion] = tokens[model];
        expected += (prompt + completion) as f64 * price / 1e6;
    }
    let total = stats["cost"]["total"].as_f64().unwrap();
    assert!((total - expected).abs() < 1e-9, "{total} vs {expected}");
    assert_eq!(stats["cost"]["complete"], true);
}

#[test]
fn thresholds_and_metric_choices_change_the_decision() {
    let dir = tempfile::tempdir().unwrap();
    let (base, slower) = inputs(dir.path());
    let (base, slower) = (base.to_str().unwrap(), slower.to_str().unwrap());
    // A threshold just above the change forgives it; one just below does not.
    let json = compare(&[base, slower, "--format", "json", "--metric", "llm_latency"]);
    let report: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["findings"].as_array().unwrap().len(), 1);
    let change = report["findings"][0]["change_percent"].as_f64().unwrap();
    assert!(change > 0.0);
    let above = format!("llm_latency={}", change * 1.01);
    let below = format!("llm_latency={}", change * 0.99);
    let only = ["--metric", "llm_latency", "--max-regression"];
    let forgiven = compare(&[&[base, slower][..], &only, &[&above]].concat());
    assert_eq!(code(&forgiven), 0, "{}", stdout(&forgiven));
    assert!(stdout(&forgiven).contains("WORSE, WITHIN THRESHOLD"));
    let kept = compare(&[&[base, slower][..], &only, &[&below]].concat());
    assert_eq!(code(&kept), 1, "{}", stdout(&kept));
    // Leaving the latency out of the family leaves nothing worse.
    let tokens = compare(&[base, slower, "--metric", "total_tokens"]);
    assert_eq!(code(&tokens), 0, "{}", stdout(&tokens));
}

#[test]
fn errors_exit_two_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = inputs(dir.path());
    let base = base.to_str().unwrap();
    let missing = dir.path().join("missing.json");
    let cases: [(&[&str], &str); 5] = [
        (&[base, missing.to_str().unwrap()], "missing.json"),
        (&[base, base, "--metric", "latency"], "llm_latency"),
        (
            &[base, base, "--max-regression", "tool_latency"],
            "METRIC=PERCENT",
        ),
        (&[base, base, "--alpha", "1.5"], "between 0 and 1"),
        (
            &[
                base,
                base,
                "--metric",
                "llm_latency",
                "--max-regression",
                "total_tokens=5",
            ],
            "total_tokens",
        ),
    ];
    for (args, says) in cases {
        let o = compare(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

/// Names a run on `base` (a merge patch).
async fn name_run(client: &reqwest::Client, base: &str, id: &str, name: &str) {
    let r = client
        .patch(format!("{base}/v1/runs/{id}"))
        .header("content-type", "application/merge-patch+json")
        .body(json!({ "name": name }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The binary serving from a data folder in `dir`, ready.
async fn serve(dir: &Path) -> (Server, reqwest::Client) {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::spawn(&[("AGENTPROF_DATA_DIR", data.to_str().unwrap())]);
    let client = reqwest::Client::new();
    server.ready(&client).await;
    (server, client)
}

/// The same gate on runs stored on a server: sides by id or by name, the server comparing at the
/// level and over the metrics asked for, and errors as exit 2.
#[tokio::test]
async fn runs_on_a_server_are_compared_by_id_or_name() {
    let dir = tempfile::tempdir().unwrap();
    let (base_file, slower_file) = inputs(dir.path());
    let (server, client) = serve(dir.path()).await;
    let url = server.base.clone();
    let base_id = post_run(&client, &url, std::fs::read(&base_file).unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let slower_id = post_run(&client, &url, std::fs::read(&slower_file).unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    name_run(&client, &url, &base_id, "nightly baseline").await;
    // Two runs of one name: the newest is meant.
    let older = post_run(&client, &url, std::fs::read(&slower_file).unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    name_run(&client, &url, &older, "candidate").await;
    name_run(&client, &url, &slower_id, "candidate").await;

    let run = |args: Vec<String>| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let mut all = vec!["--url".to_owned(), url];
            all.extend(args);
            compare(&all.iter().map(String::as_str).collect::<Vec<_>>())
        })
    };
    let same = run(vec![base_id.clone(), "nightly baseline".into()])
        .await
        .unwrap();
    assert_eq!(code(&same), 0, "{}", stdout(&same));

    let worse = run(vec![
        "nightly baseline".into(),
        "candidate".into(),
        "--format".into(),
        "json".into(),
    ])
    .await
    .unwrap();
    assert_eq!(
        code(&worse),
        1,
        "{}",
        String::from_utf8_lossy(&worse.stderr)
    );
    let report: Value = serde_json::from_slice(&worse.stdout).unwrap();
    assert_eq!(report["worse"][0], "llm_latency");
    assert_eq!(report["pairing"], "request_number");

    // The server tests at the level and over the family it is given.
    let one = run(vec![
        base_id.clone(),
        slower_id.clone(),
        "--format".into(),
        "json".into(),
        "--alpha".into(),
        "0.01".into(),
        "--metric".into(),
        "total_tokens".into(),
    ])
    .await
    .unwrap();
    assert_eq!(code(&one), 0, "{}", String::from_utf8_lossy(&one.stderr));
    let report: Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(report["alpha"], 0.01);
    assert_eq!(report["findings"].as_array().unwrap().len(), 1);

    for (args, says) in [
        (vec![base_id.clone(), "no such run".to_owned()], "no run on"),
        (
            vec![
                base_id.clone(),
                base_id.clone(),
                "--metric".into(),
                "score:accuracy".into(),
            ],
            "score:accuracy",
        ),
        (vec![base_id.clone(), uuid_zero()], "404"),
    ] {
        let o = run(args.clone()).await.unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(code(&o), 2, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }

    // The body's new fields are checked with their pointers.
    for (body, pointer) in [
        (
            json!({"baseline": base_id, "candidate": base_id, "alpha": 1.0}),
            "/alpha",
        ),
        (
            json!({"baseline": base_id, "candidate": base_id, "metrics": []}),
            "/metrics",
        ),
        (
            json!({"baseline": base_id, "candidate": base_id, "metrics": ["llm_latency", "speed"]}),
            "/metrics/1",
        ),
    ] {
        let r = client
            .post(format!("{url}/v1/compare"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(problem["errors"][0]["path"], pointer, "{problem}");
    }
}

fn uuid_zero() -> String {
    "00000000-0000-4000-8000-000000000000".to_owned()
}

/// `POST /v1/compare` with `gate` decides as the binary does, for a hook with no binary (the
/// toolkit plugin's gate): the same runs pass, the slower copy fails on latency, with markdown.
#[tokio::test]
async fn the_server_answers_the_gate_with_its_markdown() {
    let dir = tempfile::tempdir().unwrap();
    let (base_file, slower_file) = inputs(dir.path());
    let (server, client) = serve(dir.path()).await;
    let url = server.base.clone();
    let id = |v: Value| v["id"].as_str().unwrap().to_owned();
    let base = id(post_run(&client, &url, std::fs::read(&base_file).unwrap()).await);
    let slower = id(post_run(&client, &url, std::fs::read(&slower_file).unwrap()).await);
    let gate = |candidate: &str, gate: Value| {
        let body = json!({"baseline": base, "candidate": candidate, "gate": gate});
        let (client, url) = (client.clone(), url.clone());
        async move {
            let r = client
                .post(format!("{url}/v1/compare"))
                .json(&body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };

    let (status, same) = gate(&base, json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(same["gate"]["exit_code"], 0, "{}", same["gate"]);
    assert_eq!(same["gate"]["worse"], json!([]));

    let (status, worse) = gate(&slower, json!({})).await;
    assert_eq!(status, 200);
    let answer = &worse["gate"];
    assert_eq!(answer["exit_code"], 1);
    assert!(
        answer["worse"]
            .as_array()
            .unwrap()
            .contains(&json!("llm_latency")),
        "{answer}"
    );
    let markdown = answer["markdown"].as_str().unwrap();
    assert!(markdown.contains("| `llm_latency` |"), "{markdown}");
    // The binary's own markdown for the same two files is the same report.
    let offline = compare(&[
        base_file.to_str().unwrap(),
        slower_file.to_str().unwrap(),
        "--format",
        "markdown",
    ]);
    assert_eq!(stdout(&offline).trim(), markdown.trim());

    // A practical threshold the slowdown does not pass turns the failure into a pass.
    let (_, lenient) = gate(&slower, json!({"max_regression": {"llm_latency": 1e9}})).await;
    assert!(
        !lenient["gate"]["worse"]
            .as_array()
            .unwrap()
            .contains(&json!("llm_latency")),
        "{}",
        lenient["gate"]
    );
    // A threshold that is not a percent is refused with its pointer; so is an unknown field.
    let (status, bad) = gate(&slower, json!({"max_regression": {"llm/latency": -1}})).await;
    assert!(status == 400 || status == 422, "{status}");
    assert!(
        bad.to_string()
            .contains("/gate/max_regression/llm~1latency"),
        "{bad}"
    );
    let (status, bad) = gate(&slower, json!({"max_regression": {"latency": 5}})).await;
    assert!(status == 400 || status == 422, "{status}");
    assert!(
        bad.to_string().contains("/gate/max_regression/latency"),
        "{bad}"
    );
    let (status, _) = gate(&slower, json!({"alpha": 0.1})).await;
    assert!(status == 400 || status == 422, "{status}");
    server.stop();
}

/// A TLS front for the plain-HTTP server at `upstream` (`host:port`): a certificate for
/// `localhost` signed by a CA made here. Returns its port and the CA certificate (PEM).
async fn tls_front(upstream: String) -> (u16, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use std::sync::Arc;
    use tokio_rustls::rustls;
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream) = (acceptor.clone(), upstream.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, ca.pem())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_are_compared_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (base_file, _) = inputs(dir.path());
    let (server, client) = serve(dir.path()).await;
    let id = post_run(&client, &server.base, std::fs::read(&base_file).unwrap()).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let upstream = server.base.trim_start_matches("http://").to_owned();
    let (port, ca) = tls_front(upstream).await;
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let url = format!("https://localhost:{port}");
    let run = |trust: bool| {
        let (url, id, ca_file) = (url.clone(), id.clone(), ca_file.clone());
        tokio::task::spawn_blocking(move || {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentprof"));
            cmd.args(["compare", "--url", &url, &id, &id]);
            if trust {
                cmd.env("SSL_CERT_FILE", &ca_file);
            }
            cmd.output().unwrap()
        })
    };
    let trusted = run(true).await.unwrap();
    assert_eq!(
        code(&trusted),
        0,
        "{}{}",
        stdout(&trusted),
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(stdout(&trusted).contains("no metric is worse"));
    // A server whose certificate the system does not trust is an error, not a fallback.
    let untrusted = run(false).await.unwrap();
    assert_eq!(code(&untrusted), 2);
    let err = String::from_utf8_lossy(&untrusted.stderr).to_lowercase();
    assert!(err.contains("invalid peer certificate"), "{err}");
    server.stop();
}
