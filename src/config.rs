//! Typed server configuration, from flags and environment variables (clap's `env`).
//!
//! Secrets (the database URL's password, API keys) never reach logs: their `Debug` output is
//! redacted, and the keys are compared in constant time (see `api::auth`).

use crate::profiler::statistics::cost::PriceTable;
use clap::Args;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What one batch's steps may take once read: about 100,000 realistic steps.
pub const DEFAULT_MAX_BATCH_MEMORY: usize = 256 * 1024 * 1024;

/// Memory all ingests at once may take at their worst, by default.
pub const DEFAULT_INGEST_MEMORY: usize = 1024 * 1024 * 1024;

/// Ingests at once by default: as many as fit in `ingest_memory` at their worst case (the body
/// at its limit plus its prepared steps at their budget; a gzip body is inflated as it is read,
/// never whole), at least one, and no more than one per core since they are CPU-bound. With the
/// default limits that is 3, or fewer cores.
pub fn default_concurrent_ingests(
    ingest_memory: usize,
    max_body: usize,
    max_batch_memory: usize,
) -> usize {
    let worst = max_body.saturating_add(max_batch_memory).max(1);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    (ingest_memory / worst).clamp(1, cores)
}

#[derive(Clone, Args)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "AGENTPROF_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,

    /// Also receive OTLP traces over gRPC (`TraceService/Export`) on this address, 4317 by
    /// convention; off unless set. Same runs, keys, limits and ingest gate as `POST /v1/traces`.
    #[arg(long, env = "AGENTPROF_OTLP_GRPC_BIND")]
    pub otlp_grpc_bind: Option<SocketAddr>,

    /// `postgres://...` for PostgreSQL, `sqlite://PATH` for SQLite. Without it, runs are kept in
    /// SQLite at `AGENTPROF_DATA_DIR/agentprof.db`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,

    /// Streaming standbys of the PostgreSQL primary in DATABASE_URL, comma-separated: outputs,
    /// run lists and series are read from them, each read once its standby has replayed every
    /// write acknowledged before it (else from the primary). Writes always go to the primary.
    #[arg(
        long = "read-database-url",
        env = "AGENTPROF_READ_DATABASE_URL",
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub read_database_urls: Vec<DatabaseUrl>,

    /// A standby further behind the primary than this much WAL takes no reads until it catches
    /// up (`64MiB`, or bytes).
    #[arg(long, env = "AGENTPROF_READ_MAX_LAG", default_value = "64MiB")]
    pub read_max_lag: bytesize::ByteSize,

    /// Milliseconds a read waits for its standby to replay the writes it must see before it is
    /// sent to the primary instead.
    #[arg(long, env = "AGENTPROF_READ_WAIT_MS", default_value_t = 200)]
    pub read_wait_ms: u64,

    /// Directory for the embedded SQLite database when no DATABASE_URL is given.
    #[arg(long, env = "AGENTPROF_DATA_DIR", default_value = ".")]
    pub data_dir: PathBuf,

    /// Comma-separated `read:KEY` / `write:KEY` entries; a write key can also read. Without keys
    /// every endpoint is open, and the server refuses non-loopback addresses unless
    /// `--allow-unauthenticated` is given.
    #[arg(long, env = "AGENTPROF_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<ApiKeys>,

    /// Serve without API keys on a non-loopback address.
    #[arg(long, env = "AGENTPROF_ALLOW_UNAUTHENTICATED", default_value_t = false)]
    pub allow_unauthenticated: bool,

    /// Largest request body accepted, in bytes (compressed size for gzip bodies).
    #[arg(long, env = "AGENTPROF_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Largest size a gzip body may inflate to, in bytes (default: 4x the body limit).
    #[arg(long, env = "AGENTPROF_MAX_DECOMPRESSED_BYTES")]
    pub max_decompressed_bytes: Option<usize>,

    /// Memory for cached frames and computed outputs, in bytes.
    #[arg(long, env = "AGENTPROF_CACHE_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub cache_bytes: u64,

    /// Bytes of JSON that the UUID lists of a run's concurrency spikes may take in all; past it
    /// the lists are cut (their counts stay exact) and the output says `truncated`.
    #[arg(long, env = "AGENTPROF_MAX_SPIKE_UUID_BYTES", default_value_t = crate::profiler::core::config::DEFAULT_SPIKE_UUID_BYTES)]
    pub max_spike_uuid_bytes: usize,

    /// Memory that analyses in flight may take in all: the frames they load and what they
    /// compute (`1GiB`, `512MiB`, or bytes). An analysis that would take more gets a 413
    /// `window-too-large` naming the most recent window of the run that fits; the others wait
    /// for their share. The frame and output caches (--cache-bytes) are apart from it.
    #[arg(long, env = "AGENTPROF_MAX_ANALYSIS_MEMORY", default_value = "1GiB")]
    pub max_analysis_memory: bytesize::ByteSize,

    /// Seconds an analysis waits for its share of --max-analysis-memory before a 503 with
    /// Retry-After.
    #[arg(long, env = "AGENTPROF_ANALYSIS_WAIT_SECS", default_value_t = 30)]
    pub analysis_wait_secs: u64,

    /// Seconds before a request that has not produced its response headers gets a 503.
    #[arg(long, env = "AGENTPROF_REQUEST_TIMEOUT_SECS", default_value_t = 120)]
    pub request_timeout_secs: u64,

    /// Bytes one batch's steps may take once read and prepared; a bigger batch gets a 413 that
    /// says how to split it. Bounds an ingest's memory whatever its steps look like.
    #[arg(long, env = "AGENTPROF_MAX_BATCH_MEMORY", default_value_t = DEFAULT_MAX_BATCH_MEMORY)]
    pub max_batch_memory: usize,

    /// Batches (and OTLP exports) ingested at once (default: as many as fit in
    /// --ingest-memory at their worst case, at most one per core).
    #[arg(long, env = "AGENTPROF_MAX_CONCURRENT_INGESTS")]
    pub max_concurrent_ingests: Option<usize>,

    /// Bytes that all ingests at once may take at their worst case (an ingest holds its body as
    /// sent and its prepared steps); sets the default of --max-concurrent-ingests.
    #[arg(long, env = "AGENTPROF_INGEST_MEMORY", default_value_t = DEFAULT_INGEST_MEMORY)]
    pub ingest_memory: usize,

    /// Seconds an ingest waits for a free slot before it gets a 503 with Retry-After.
    #[arg(long, env = "AGENTPROF_INGEST_WAIT_SECS", default_value_t = 10)]
    pub ingest_wait_secs: u64,

    /// Seconds a connection gets to send a request's headers, counted from when it opens or from
    /// the end of the previous response: also the idle keep-alive timeout.
    #[arg(long, env = "AGENTPROF_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    pub header_read_timeout_secs: u64,

    /// Client connections open at once. At the cap, the oldest connection that is not inside a
    /// request is closed for a new one; lowered to fit the open-files limit.
    #[arg(long, env = "AGENTPROF_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,

    /// Seconds an Idempotency-Key is remembered (a retry within it gets the first response).
    #[arg(long, env = "AGENTPROF_IDEMPOTENCY_WINDOW_SECS", default_value_t = 24 * 3600)]
    pub idempotency_window_secs: u64,

    /// How long the runs that OTLP exports create keep a request after its last step: seconds
    /// or a duration ("7d", "12h", "90m"), or "off" to keep everything. A run's own
    /// `retention_seconds` (create or PATCH) overrides it.
    #[arg(long, env = "AGENTPROF_OTLP_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub otlp_retention: Retention,

    /// A price table, JSON or YAML (`{"models": {"<model>": {"input": .., "output": ..,
    /// "cached_input": ..}}}`, USD per million tokens): new runs are costed with it, and keep
    /// it (docs/cost.md). Without it, runs have no prices until one is PATCHed.
    #[arg(long, env = "AGENTPROF_PRICES", value_parser = parse_prices_file)]
    pub prices: Option<Prices>,

    /// Seconds between retention sweeps (each deletes expired requests in chunks).
    #[arg(long, env = "AGENTPROF_RETENTION_SWEEP_SECS", default_value_t = 60)]
    pub retention_sweep_secs: u64,

    /// Stored steps after which the server trains a compression dictionary on the database's
    /// own steps (then again at each eightfold growth; docs/storage.md); 0 keeps the built-in
    /// dictionary only.
    #[arg(long, env = "AGENTPROF_DICTIONARY_AFTER_STEPS", default_value_t = 5000)]
    pub dictionary_after_steps: u64,
}

/// A price table read from its file when the configuration is read, so that a mistake in it
/// stops the server before it starts rather than mis-costing runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Prices(pub PriceTable);

/// Reads and checks the price table at `path`.
pub fn parse_prices_file(path: &str) -> Result<Prices, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))?;
    PriceTable::parse(&text)
        .map(Prices)
        .map_err(|e| format!("{path} is not a price table: {e}"))
}

/// A retention in whole seconds; `None` keeps everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<i64>);

/// Seconds ("3600"), a duration ("7d", "12h 30m") or "off".
fn parse_retention(s: &str) -> Result<Retention, String> {
    use crate::ingest::request::{MAX_RETENTION_SECONDS, MIN_RETENTION_SECONDS};
    let s = s.trim();
    if matches!(s, "off" | "none" | "forever") {
        return Ok(Retention(None));
    }
    let seconds = match s.parse::<u64>() {
        Ok(n) => n,
        Err(_) => humantime::parse_duration(s)
            .map_err(|e| format!("{s:?} is not seconds, a duration (7d, 12h) or \"off\": {e}"))?
            .as_secs(),
    };
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    if !(MIN_RETENTION_SECONDS..=MAX_RETENTION_SECONDS).contains(&seconds) {
        return Err(format!(
            "a retention is from {MIN_RETENTION_SECONDS} s to {MAX_RETENTION_SECONDS} s, or \"off\""
        ));
    }
    Ok(Retention(Some(seconds)))
}

/// `ServeConfig` as a standalone command line, for `agentprof` with no subcommand.
#[derive(clap::Parser)]
struct ServeOnly {
    #[command(flatten)]
    config: ServeConfig,
}

impl ServeConfig {
    /// Reads the configuration from the environment alone (flags need the `serve` subcommand).
    pub fn parse_from_env() -> ServeConfig {
        <ServeOnly as clap::Parser>::parse_from(["agentprof"]).config
    }

    pub fn max_decompressed(&self) -> usize {
        self.max_decompressed_bytes
            .unwrap_or(self.max_body_bytes.saturating_mul(4))
    }

    pub fn concurrent_ingests(&self) -> usize {
        self.max_concurrent_ingests.unwrap_or_else(|| {
            default_concurrent_ingests(
                self.ingest_memory,
                self.max_body_bytes,
                self.max_batch_memory,
            )
        })
    }
}

impl fmt::Debug for ServeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeConfig")
            .field("bind", &self.bind)
            .field("database_url", &self.database_url)
            .field("data_dir", &self.data_dir)
            .field("api_keys", &self.api_keys)
            .field("allow_unauthenticated", &self.allow_unauthenticated)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_decompressed_bytes", &self.max_decompressed())
            .field("cache_bytes", &self.cache_bytes)
            .field("max_analysis_memory", &self.max_analysis_memory.as_u64())
            .field("analysis_wait_secs", &self.analysis_wait_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("idempotency_window_secs", &self.idempotency_window_secs)
            .field("otlp_retention", &self.otlp_retention.0)
            .field("retention_sweep_secs", &self.retention_sweep_secs)
            .field("dictionary_after_steps", &self.dictionary_after_steps)
            .field(
                "priced_models",
                &self.prices.as_ref().map_or(0, |p| p.0.models.len()),
            )
            .field("max_batch_memory", &self.max_batch_memory)
            .field("max_concurrent_ingests", &self.concurrent_ingests())
            .field("ingest_memory", &self.ingest_memory)
            .field("ingest_wait_secs", &self.ingest_wait_secs)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

/// A database URL whose password is hidden from `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_postgres(&self) -> bool {
        self.0.starts_with("postgres://") || self.0.starts_with("postgresql://")
    }

    pub fn is_sqlite(&self) -> bool {
        self.0.starts_with("sqlite:")
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let s = &self.0;
        let Some(scheme_end) = s.find("://") else {
            return s.clone();
        };
        let rest = &s[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let user = userinfo.split(':').next().unwrap_or("");
                let masked = if userinfo.contains(':') {
                    format!("{user}:***")
                } else {
                    user.to_owned()
                };
                format!("{}://{}@{}", &s[..scheme_end], masked, &rest[at + 1..])
            }
            None => s.clone(),
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let url = DatabaseUrl(s.to_owned());
        if url.is_postgres() || url.is_sqlite() {
            Ok(url)
        } else {
            Err("expected a postgres:// or sqlite:// URL".to_owned())
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
}

/// The configured API keys, kept only as SHA-256 digests: the server never holds a key it
/// could log, and a check hashes only the presented key. `Debug` shows how many there are.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeys {
    pub(crate) digests: Vec<(Access, [u8; 32])>,
}

impl ApiKeys {
    pub fn new(keys: Vec<(Access, String)>) -> ApiKeys {
        ApiKeys {
            digests: keys
                .into_iter()
                .map(|(access, key)| (access, Self::digest(&key)))
                .collect(),
        }
    }

    /// Keys are compared by digest, so the comparison time says nothing about a key's length.
    pub(crate) fn digest(key: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(key.as_bytes()).into()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }
}

impl FromStr for ApiKeys {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut keys = Vec::new();
        for (i, entry) in s
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (kind, key) = entry
                .split_once(':')
                .ok_or_else(|| format!("entry {} is not `read:KEY` or `write:KEY`", i + 1))?;
            let access = match kind.trim() {
                "read" => Access::Read,
                "write" => Access::Write,
                other => {
                    return Err(format!(
                        "entry {}: unknown access {other:?} (use read or write)",
                        i + 1
                    ));
                }
            };
            let key = key.trim();
            if key.len() < 8 {
                return Err(format!(
                    "entry {}: keys must be at least 8 characters",
                    i + 1
                ));
            }
            keys.push((access, key.to_owned()));
        }
        if keys.is_empty() {
            return Err("no keys given".to_owned());
        }
        Ok(ApiKeys::new(keys))
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reads = self
            .digests
            .iter()
            .filter(|(a, _)| *a == Access::Read)
            .count();
        write!(
            f,
            "ApiKeys {{ read: {reads}, write: {}, values: <redacted> }}",
            self.digests.len() - reads
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_ingest_concurrency_fits_the_memory_budget() {
        const MIB: usize = 1024 * 1024;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
        // The defaults: a 64 MiB body + 256 MiB of steps, three times in 1 GiB.
        assert_eq!(
            default_concurrent_ingests(DEFAULT_INGEST_MEMORY, 64 * MIB, 256 * MIB),
            cores.min(3)
        );
        // Never zero, however small the budget.
        assert_eq!(default_concurrent_ingests(MIB, 256 * MIB, 256 * MIB), 1);
        // Never more than one per core, however large.
        assert_eq!(default_concurrent_ingests(usize::MAX, MIB, MIB), cores);
    }

    #[test]
    fn database_url_hides_password() {
        let u: DatabaseUrl = "postgres://app:s3cret@db:5432/agentprof".parse().unwrap();
        assert_eq!(u.redacted(), "postgres://app:***@db:5432/agentprof");
        assert!(!format!("{u:?}").contains("s3cret"));
        let u: DatabaseUrl = "sqlite://./agentprof.db".parse().unwrap();
        assert_eq!(u.redacted(), "sqlite://./agentprof.db");
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn api_keys_parse_and_redact() {
        let k: ApiKeys = "read:reader-key-1, write:writer-key-1".parse().unwrap();
        assert_eq!(
            k.digests,
            [
                (Access::Read, ApiKeys::digest("reader-key-1")),
                (Access::Write, ApiKeys::digest("writer-key-1"))
            ]
        );
        let shown = format!("{k:?}");
        assert!(!shown.contains("reader-key-1") && shown.contains("read: 1"));
        assert!("admin:whatever-long".parse::<ApiKeys>().is_err());
        assert!("read:short".parse::<ApiKeys>().is_err());
        assert!("".parse::<ApiKeys>().is_err());
    }
}
