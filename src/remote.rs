//! `agentprof compare --url`: the two runs are on a server. Each side is a run id or a run name
//! (the newest run of that name); the server compares them (`POST /v1/compare`, with the
//! windows, the level and the metrics asked for), and the gate decides here as it does offline.

use crate::gate::ComparedRuns;
use crate::profiler::statistics::compare::CompareOptions;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Says every cause: reqwest's own message ("error sending request") leaves out whether the
    /// connection was refused or the certificate not trusted.
    #[error("{url}: {}", crate::error_chain(source))]
    Http { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {detail}")]
    Answer {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("no run on {base} is named {name:?}")]
    NoSuchName { base: String, name: String },
    /// The HTTP client could not start: its TLS setup found no CA certificates, say.
    #[error("the HTTP client could not start: {}", crate::error_chain(.0))]
    Client(reqwest::Error),
}

/// One side of a comparison on a server: a run id or name, and a window of it.
#[derive(Debug, Clone)]
pub struct RemoteSide {
    pub run: String,
    pub from: Option<f64>,
    pub to: Option<f64>,
}

/// A server, and the key to read it with.
pub struct Remote {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

/// The longest text the run list's name search takes (`GET /v1/runs?name=`).
const NAME_SEARCH_CHARS: usize = 200;

impl Remote {
    /// A server at `base`: `http://` or `https://`. TLS is rustls, verifying the server against
    /// the system's roots; `SSL_CERT_FILE` names a private CA's certificates instead.
    pub fn new(base: &str, key: Option<String>) -> Result<Remote, RemoteError> {
        Ok(Remote {
            base: base.trim_end_matches('/').to_owned(),
            key,
            http: reqwest::Client::builder()
                .build()
                .map_err(RemoteError::Client)?,
        })
    }

    /// Sends `req` and reads its JSON answer; a problem answer becomes its `detail`.
    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<Value, RemoteError> {
        let req = match &self.key {
            Some(k) => req.bearer_auth(k),
            None => req,
        };
        let http = |source| RemoteError::Http {
            url: url.to_owned(),
            source,
        };
        let answer = req.send().await.map_err(http)?;
        let status = answer.status();
        let bytes = answer.bytes().await.map_err(http)?;
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        let problem = |detail: String| RemoteError::Answer {
            url: url.to_owned(),
            status: status.as_u16(),
            detail,
        };
        match body {
            Some(body) if status.is_success() => Ok(body),
            Some(body) => Err(problem(
                body["detail"]
                    .as_str()
                    .unwrap_or(status.canonical_reason().unwrap_or("an error"))
                    .to_owned(),
            )),
            None => Err(problem("the answer is not JSON".to_owned())),
        }
    }

    /// The run `run` names: itself when it is an id, else the newest run of exactly that name.
    pub async fn resolve(&self, run: &str) -> Result<Uuid, RemoteError> {
        if let Ok(id) = Uuid::parse_str(run) {
            return Ok(id);
        }
        let search: String = run.chars().take(NAME_SEARCH_CHARS).collect();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = form_urlencoded::Serializer::new(String::new());
            query
                .append_pair("limit", "1000")
                .append_pair("name", &search);
            if let Some(c) = &cursor {
                query.append_pair("cursor", c);
            }
            let url = format!("{}/v1/runs?{}", self.base, query.finish());
            let page = self.send(self.http.get(&url), &url).await?;
            // The list is newest first: the first exact match is the newest run of that name.
            let found = page["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|item| item["name"].as_str() == Some(run))
                .find_map(|item| item["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()));
            if let Some(id) = found {
                return Ok(id);
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        Err(RemoteError::NoSuchName {
            base: self.base.clone(),
            name: run.to_owned(),
        })
    }

    /// The server's comparison of the two sides, at `options`' level and over its metrics.
    pub async fn compare(
        &self,
        baseline: &RemoteSide,
        candidate: &RemoteSide,
        options: &CompareOptions,
    ) -> Result<ComparedRuns, RemoteError> {
        let (a, b) = tokio::try_join!(self.resolve(&baseline.run), self.resolve(&candidate.run))?;
        let mut body = json!({"baseline": a, "candidate": b, "alpha": options.alpha});
        if let Some(only) = &options.only {
            body["metrics"] = json!(only);
        }
        for (name, bound) in [
            ("baseline_from", baseline.from),
            ("baseline_to", baseline.to),
            ("candidate_from", candidate.from),
            ("candidate_to", candidate.to),
        ] {
            if let Some(t) = bound {
                body[name] = json!(t);
            }
        }
        let url = format!("{}/v1/compare", self.base);
        let answer = self.send(self.http.post(&url).json(&body), &url).await?;
        serde_json::from_value(answer).map_err(|e| RemoteError::Answer {
            url,
            status: 200,
            detail: format!("not a comparison: {e}"),
        })
    }
}
