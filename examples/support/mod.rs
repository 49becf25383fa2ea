//! What the load examples share: an HTTP client for one server and latency summaries.

#![allow(dead_code)] // each example uses its own subset

use serde_json::{Value, json};

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A process's `VmRSS:` or `VmHWM:` (the field as /proc/PID/status names it), in MB; NaN when
/// it cannot be read.
pub fn process_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn latency_summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    json!({"count": ms.len(), "p50_ms": percentile(&ms, 50.0), "p90_ms": percentile(&ms, 90.0),
           "p99_ms": percentile(&ms, 99.0), "max_ms": ms.last().copied().unwrap_or(f64::NAN)})
}

pub struct Client {
    pub http: reqwest::Client,
    pub base: String,
    pub key: Option<String>,
}

impl Client {
    pub fn new(base: &str, key: Option<String>) -> anyhow::Result<Client> {
        Ok(Client {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            key,
        })
    }

    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = &self.key {
            r = r.bearer_auth(k);
        }
        r
    }

    pub async fn create_run(&self, name: &str) -> anyhow::Result<String> {
        let r: Value = self
            .req(reqwest::Method::POST, "/v1/runs")
            .header("content-type", "application/json")
            .body(json!({"name": name}).to_string())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        Ok(r["id"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn post_batch(&self, run: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        Ok(self
            .req(reqwest::Method::POST, &format!("/v1/runs/{run}/steps"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    /// Posts an OTLP/protobuf export into `run`; `Some(seconds)` when the server was busy (503 or
    /// 429 with `Retry-After`), so the caller can resend.
    pub async fn post_otlp(&self, run: &str, body: Vec<u8>) -> anyhow::Result<Option<u64>> {
        let r = self
            .req(reqwest::Method::POST, "/v1/traces")
            .header("content-type", "application/x-protobuf")
            .header("x-agentprof-run-id", run)
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        if status == 503 || status == 429 {
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .unwrap_or(1);
            return Ok(Some(wait));
        }
        r.error_for_status()?;
        Ok(None)
    }
}
