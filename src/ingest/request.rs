//! The run fields a create request carries beside its steps, as a typed body whose OpenAPI
//! schema is derived from the same type that reads it.

use crate::jsontext::ObjectJson;
use crate::profiler::statistics::cost::PriceTable;
use crate::profiler::{Dialect, ProfilerConfig};
use crate::trace::FieldError;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The longest run name, in characters.
pub const MAX_RUN_NAME: usize = 500;

/// A run's name: any string of at most 500 characters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, max_length = 500))]
pub struct RunName(pub String);

impl<'de> Deserialize<'de> for RunName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RunName, D::Error> {
        let name = String::deserialize(d)?;
        if name.chars().count() > MAX_RUN_NAME {
            return Err(serde::de::Error::custom(format!(
                "at most {MAX_RUN_NAME} characters"
            )));
        }
        Ok(RunName(name))
    }
}

/// How long a run keeps a request after its last step, in seconds: from a minute to a
/// century (beyond that a run keeps everything, which is `null`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = i64, minimum = 60, maximum = 3_155_760_000i64))]
pub struct RetentionSeconds(pub i64);

/// The shortest retention: a sweep runs about once a minute, so less would not be kept.
pub const MIN_RETENTION_SECONDS: i64 = 60;
/// The longest retention, a century.
pub const MAX_RETENTION_SECONDS: i64 = 3_155_760_000;

impl<'de> Deserialize<'de> for RetentionSeconds {
    /// An integer, also written as a number with no fraction (`3600.0`), as JSON Schema's
    /// `integer` allows.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<RetentionSeconds, D::Error> {
        let number = serde_json::Number::deserialize(d)?;
        let n = match (number.as_i64(), number.as_f64()) {
            (Some(i), _) => i as f64,
            (None, Some(f)) if f.fract() == 0.0 => f,
            _ => {
                return Err(serde::de::Error::custom(format!(
                    "{number} is not a whole number of seconds"
                )));
            }
        };
        if !(MIN_RETENTION_SECONDS as f64..=MAX_RETENTION_SECONDS as f64).contains(&n) {
            return Err(serde::de::Error::custom(format!(
                "retention is from {MIN_RETENTION_SECONDS} to {MAX_RETENTION_SECONDS} seconds \
                 (null keeps everything)"
            )));
        }
        Ok(RetentionSeconds(n as i64))
    }
}

/// Body of `POST /v1/runs`. Every field is optional; a bare list is taken as `requests`.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "nightly eval",
    "profiler_config": {"prompt_caching_prefixes": {"min_frequency": 0.3}},
    "metadata": {"commit": "4f2a9c1"}})))]
#[serde(deny_unknown_fields)]
pub struct CreateRun {
    #[serde(default)]
    pub name: Option<RunName>,
    /// `aiq-1.1` or `nat-1.9`; absent or null: nat-1.9 once a step in nat 1.9's schema (with a
    /// top-level `parent_id`) is stored, aiq-1.1 until then.
    #[serde(default)]
    pub toolkit: Option<Dialect>,
    /// The toolkit's `ProfilerConfig` field names, merged over the default.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::profiler::core::config_schema::ProfilerConfigPatch>))]
    pub profiler_config: Option<Box<RawValue>>,
    /// Anything the run should carry (an eval's config, its scores: docs/scores.md), kept as
    /// sent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<ObjectJson>,
    /// Delete requests whose last step is older than this many seconds (docs/live.md); absent
    /// or null keeps everything.
    #[serde(default)]
    pub retention_seconds: Option<RetentionSeconds>,
    /// The prices to cost this run with (docs/cost.md); absent or null: the server's
    /// (`--prices`) as they are now.
    #[serde(default)]
    pub prices: Option<PriceTable>,
    /// Steps in any input form. They are read step by step as the body arrives, by the step
    /// reader; this field only names them (it never holds anything).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::trace::schema::nullable_step_document))]
    pub requests: Option<serde::de::IgnoredAny>,
}

impl CreateRun {
    /// The run this body describes: defaults for what it leaves out, and its profiler config
    /// checked (a failure names its place under `/profiler_config`).
    pub fn into_new_run(
        self,
        server_prices: &PriceTable,
    ) -> Result<crate::store::NewRun, FieldError> {
        let profiler_config = match &self.profiler_config {
            None => Value::Object(Map::new()),
            Some(raw) => profiler_config(raw, "/profiler_config")?,
        };
        let prices = match self.prices {
            Some(prices) => checked_prices(prices, "/prices")?,
            None => server_prices.clone(),
        };
        Ok(crate::store::NewRun {
            name: self.name.unwrap_or_default().0,
            profiler_config,
            metadata: self.metadata.unwrap_or_default(),
            toolkit: self.toolkit,
            retention_seconds: self.retention_seconds.map(|r| r.0),
            prices,
        })
    }
}

/// A price table as sent, its prices checked; a failure is named under `at`.
pub fn checked_prices(prices: PriceTable, at: &str) -> Result<PriceTable, FieldError> {
    prices.validate().map_err(|e| FieldError {
        path: format!("{at}{}", e.pointer),
        message: e.message,
    })?;
    Ok(prices)
}

/// The most bytes a profiler config may take as text: every field of it fits in a few
/// kilobytes, and a config is read as values (unlike metadata), so this bounds what reading it
/// can cost.
pub const MAX_PROFILER_CONFIG_BYTES: usize = 64 * 1024;

/// A profiler config (or a merge patch of one) as sent: an object of at most
/// [`MAX_PROFILER_CONFIG_BYTES`] that `ProfilerConfig` reads, a failure named at `at`.
pub fn profiler_config(raw: &RawValue, at: &str) -> Result<Value, FieldError> {
    let fail = |path: String, message: String| FieldError { path, message };
    if raw.get().len() > MAX_PROFILER_CONFIG_BYTES {
        return Err(fail(
            at.to_owned(),
            format!("a profiler config takes at most {MAX_PROFILER_CONFIG_BYTES} bytes"),
        ));
    }
    let value: Value =
        serde_json::from_str(raw.get()).map_err(|e| fail(at.to_owned(), e.to_string()))?;
    if !value.is_object() {
        return Err(fail(
            at.to_owned(),
            "expected an object with the toolkit's ProfilerConfig field names".to_owned(),
        ));
    }
    ProfilerConfig::from_json(value.clone())
        .map_err(|e| fail(format!("{at}{}", e.path), e.message))?;
    Ok(value)
}
