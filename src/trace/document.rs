//! Reading a step document as it is parsed, one step at a time.
//!
//! A document can hold millions of small steps, and a step grows several times over on its way
//! from JSON text to a parsed value and then to what is stored. So the document is never held as
//! one parsed value: the reader walks its requests, parses each step on its own, validates it,
//! and hands it to a [`StepSink`], which turns it into whatever the caller keeps (the step itself
//! for `agentprof analyze`, a prepared row for the service) and may stop the reading when a budget
//! is spent. Memory then grows with what is kept, never with the document's parsed form.
//!
//! The forms are those docs/toolkit-semantics.md#input-forms describes: the first item tells step
//! lists from objects, and objects are the profiler form when every one of them has both
//! `request_number` and `intermediate_steps`, the eval form otherwise.

use super::direct;
use super::model::IntermediateStep;
use super::parse::{Validator, short};
use super::types::{EvalItem, InputForm, MAX_REQUEST_NUMBER};
use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::Value;
use serde_json::value::RawValue;
use std::fmt;

/// Takes each valid step as it is read.
pub trait StepSink {
    /// What is kept of a step.
    type Kept;
    /// Keeps a step, or refuses to go on (a budget is spent): the message says why.
    fn keep(&mut self, step: IntermediateStep) -> Result<Self::Kept, String>;
    /// Forgets what was counted so far: the document is being read again from its start.
    fn restart(&mut self) {}
}

/// Keeps the steps themselves.
pub struct KeepSteps;

impl StepSink for KeepSteps {
    type Kept = IntermediateStep;
    fn keep(&mut self, step: IntermediateStep) -> Result<IntermediateStep, String> {
        Ok(step)
    }
}

/// One request of a document, with what the sink kept of its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct DocRequest<S> {
    /// The profiler form's `request_number`.
    pub request_number: Option<i64>,
    /// The eval form's `id`, as text (a JSON string as itself, anything else as JSON).
    pub external_id: Option<String>,
    /// Index of the request in the document.
    pub position: usize,
    /// The eval form's item fields besides its steps.
    pub eval: Option<EvalItem>,
    pub steps: Vec<S>,
}

impl<S> DocRequest<S> {
    /// The request number a standalone analysis gives this request: its own number when it has
    /// one, otherwise its position (the reference numbers requests by position).
    pub fn number_in_document(&self) -> i64 {
        self.request_number.unwrap_or(self.position as i64)
    }
}

/// A document's requests, in document order.
#[derive(Debug, Clone, PartialEq)]
pub struct Document<S> {
    pub form: InputForm,
    pub requests: Vec<DocRequest<S>>,
}

/// Why a document was not read to its end.
#[derive(Debug)]
pub enum ReadError {
    /// Not JSON (the parser's message).
    Syntax(String),
    /// The sink stopped the reading.
    Refused(String),
    /// Values failed validation (the validator holds them).
    Invalid,
}

/// The reader's state, shared by the nested visitors.
struct Ctx<'v, K: StepSink> {
    v: &'v mut Validator,
    sink: &'v mut K,
    /// Set when the sink refused; the parser is then stopped with a custom error.
    refused: Option<String>,
    /// Some step failed validation: the rest are still validated, but no longer kept.
    invalid: bool,
    /// Position in the whole document of the first item this reader sees: a slice of a
    /// document's items read on its own still numbers, points to and derives UUIDs for its
    /// requests as the whole document would.
    first_position: usize,
    /// The deserializer reads text, so each step can be taken as its text and read straight
    /// into its types ([`super::direct`]); a document already parsed into a `Value` goes
    /// through the validator as it is.
    steps_from_text: bool,
}

/// Reads a document already parsed into a `Value`.
pub fn read_document<K>(
    doc: Value,
    v: &mut Validator,
    sink: &mut K,
) -> Result<Document<K::Kept>, ReadError>
where
    K: StepSink,
{
    read_with(doc, v, sink, 0, false)
}

/// Reads a document, or a slice of a document's top-level items whose first item is at
/// `first_position` in the whole (see [`super::source::read_parallel`]), from JSON text as
/// it is parsed.
pub fn read_document_from<'de, D, K>(
    de: D,
    v: &mut Validator,
    sink: &mut K,
    first_position: usize,
) -> Result<Document<K::Kept>, ReadError>
where
    D: Deserializer<'de>,
    K: StepSink,
{
    read_with(de, v, sink, first_position, true)
}

fn read_with<'de, D, K>(
    de: D,
    v: &mut Validator,
    sink: &mut K,
    first_position: usize,
    steps_from_text: bool,
) -> Result<Document<K::Kept>, ReadError>
where
    D: Deserializer<'de>,
    K: StepSink,
{
    let before = v.error_count();
    let mut ctx = Ctx {
        v,
        sink,
        refused: None,
        invalid: false,
        first_position,
        steps_from_text,
    };
    let read = DocumentSeed { ctx: &mut ctx }.deserialize(de);
    if let Some(why) = ctx.refused {
        return Err(ReadError::Refused(why));
    }
    let doc = read.map_err(|e: D::Error| ReadError::Syntax(e.to_string()))?;
    match doc {
        Some(doc) if ctx.v.error_count() == before => Ok(doc),
        _ => Err(ReadError::Invalid),
    }
}

/// A request body that carries a step document in one of its fields (`{"name": ..., "requests":
/// [...]}`), or is the step document itself (a bare list).
#[derive(Debug)]
pub struct Wrapped<S> {
    /// The other fields of the object, as their JSON text in the order sent (none for a bare
    /// list): free-form parts such as a run's metadata stay text, never `Value`s.
    pub fields: Vec<(String, Box<serde_json::value::RawValue>)>,
    /// The step document, when there was one (`null` is none).
    pub document: Option<Document<S>>,
    /// What the body was when it was neither an object nor a list.
    pub other: Option<&'static str>,
}

/// Reads a [`Wrapped`] document from JSON text as it is parsed; errors in the document point
/// into `field`.
pub fn read_wrapped_from<'de, D, K>(
    de: D,
    field: &'static str,
    v: &mut Validator,
    sink: &mut K,
) -> Result<Wrapped<K::Kept>, ReadError>
where
    D: Deserializer<'de>,
    K: StepSink,
{
    let before = v.error_count();
    let mut ctx = Ctx {
        v,
        sink,
        refused: None,
        invalid: false,
        first_position: 0,
        steps_from_text: true,
    };
    let read = WrappedSeed {
        ctx: &mut ctx,
        field,
    }
    .deserialize(de);
    if let Some(why) = ctx.refused {
        return Err(ReadError::Refused(why));
    }
    let wrapped = read.map_err(|e: D::Error| ReadError::Syntax(e.to_string()))?;
    match wrapped {
        Some(w) if ctx.v.error_count() == before => Ok(w),
        _ => Err(ReadError::Invalid),
    }
}

struct WrappedSeed<'c, 'v, K: StepSink> {
    ctx: &'c mut Ctx<'v, K>,
    field: &'static str,
}

impl<'de, K: StepSink> DeserializeSeed<'de> for WrappedSeed<'_, '_, K> {
    type Value = Option<Wrapped<K::Kept>>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, K: StepSink> Visitor<'de> for WrappedSeed<'_, '_, K> {
    type Value = Option<Wrapped<K::Kept>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object or a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        let doc = read_items(self.ctx, seq, "intermediate_steps", false)?;
        Ok(doc.map(|d| Wrapped {
            fields: Vec::new(),
            document: Some(d),
            other: None,
        }))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        let mut document = None;
        let mut ok = true;
        let Some(mut next) = first_key(&mut map)? else {
            return Ok(Some(Wrapped {
                fields,
                document: None,
                other: Some("a number"),
            }));
        };
        while let Some(key) = next.take() {
            if key == self.field {
                let ctx = &mut *self.ctx;
                ctx.v.push(self.field);
                let doc = map.next_value_seed(OptionalDocument { ctx: &mut *ctx });
                ctx.v.pop();
                match doc? {
                    Some(d) => document = d,
                    None => ok = false,
                }
            } else {
                let value: Box<serde_json::value::RawValue> = map.next_value()?;
                fields.retain(|(k, _)| *k != key);
                fields.push((key, value));
            }
            next = map.next_key::<String>()?;
        }
        Ok(ok.then_some(Wrapped {
            fields,
            document,
            other: None,
        }))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(other("a string"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(other("null"))
    }
}

fn other<S>(what: &'static str) -> Option<Wrapped<S>> {
    Some(Wrapped {
        fields: Vec::new(),
        document: None,
        other: Some(what),
    })
}

/// A document that may be null: `Some(None)` for null, `None` when it failed.
struct OptionalDocument<'c, 'v, K: StepSink> {
    ctx: &'c mut Ctx<'v, K>,
}

impl<'de, K: StepSink> DeserializeSeed<'de> for OptionalDocument<'_, '_, K> {
    type Value = Option<Option<Document<K::Kept>>>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_option(self)
    }
}

impl<'de, K: StepSink> Visitor<'de> for OptionalDocument<'_, '_, K> {
    type Value = Option<Option<Document<K::Kept>>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a step document or null")
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Some(None))
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        Ok(DocumentSeed { ctx: self.ctx }.deserialize(de)?.map(Some))
    }
}

/// A serde error that stops the parser once the sink refused.
fn stop<E: serde::de::Error>() -> E {
    E::custom("the document was not read to its end")
}

struct DocumentSeed<'c, 'v, K: StepSink> {
    ctx: &'c mut Ctx<'v, K>,
}

impl<'de, K: StepSink> DeserializeSeed<'de> for DocumentSeed<'_, '_, K> {
    type Value = Option<Document<K::Kept>>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, K: StepSink> Visitor<'de> for DocumentSeed<'_, '_, K> {
    type Value = Option<Document<K::Kept>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of requests, eval items or step lists")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        read_items(self.ctx, seq, "intermediate_steps", false)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // The EvalInput dump: {"eval_input_items": [{"trajectory": [...]}, ...]}
        let mut doc = None;
        let mut seen = false;
        let Some(mut next) = first_key(&mut map)? else {
            return Ok(self.not_a_document("a number"));
        };
        while let Some(key) = next.take() {
            if key != "eval_input_items" || seen {
                map.next_value::<IgnoredAny>()?;
            } else {
                seen = true;
                let ctx = &mut *self.ctx;
                ctx.v.push("eval_input_items");
                let items = map.next_value_seed(EvalInputItems { ctx: &mut *ctx });
                ctx.v.pop();
                doc = items?;
            }
            next = map.next_key::<String>()?;
        }
        if !seen {
            self.ctx.v.error(
                "expected a list of requests (profiler form), eval items (workflow_output.json) \
                 or step lists, got an object",
            );
            return Ok(None);
        }
        Ok(doc)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(self.not_a_document("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(self.not_a_document("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(self.not_a_document("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(self.not_a_document("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(self.not_a_document("a string"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(self.not_a_document("null"))
    }
}

impl<K: StepSink> DocumentSeed<'_, '_, K> {
    fn not_a_document(self, got: &str) -> Option<Document<K::Kept>> {
        self.ctx.v.error(format!(
            "expected a list of requests (profiler form), eval items (workflow_output.json) or \
             step lists, got {got}"
        ));
        None
    }
}

/// `eval_input_items`: a list of eval items whose steps are in `trajectory`.
struct EvalInputItems<'c, 'v, K: StepSink> {
    ctx: &'c mut Ctx<'v, K>,
}

impl<'de, K: StepSink> DeserializeSeed<'de> for EvalInputItems<'_, '_, K> {
    type Value = Option<Document<K::Kept>>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, K: StepSink> Visitor<'de> for EvalInputItems<'_, '_, K> {
    type Value = Option<Document<K::Kept>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of eval items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        read_items(self.ctx, seq, "trajectory", true)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        self.ctx.v.error("expected a list of eval items, got null");
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let what = drain_map(map)?;
        self.ctx
            .v
            .error(format!("expected a list of eval items, got {what}"));
        Ok(None)
    }
}

/// An item of the top-level list before its form is known.
enum Item<S> {
    Steps(Option<Vec<S>>),
    Object(Box<ObjectItem<S>>),
    /// Neither a list nor an object (already reported).
    Other(&'static str),
}

/// An object item: the fields that tell its form and identify it, and its steps.
struct ObjectItem<S> {
    request_number: Option<Value>,
    id: Option<Value>,
    eval: EvalItem,
    /// `None` when the steps field is missing; `Some(None)` when its steps failed validation.
    steps: Option<Option<Vec<S>>>,
}

/// The top-level list; `eval_items`: its objects are eval items whatever keys they have (the
/// EvalInput dump).
fn read_items<'de, A, K>(
    ctx: &mut Ctx<'_, K>,
    mut seq: A,
    steps_key: &'static str,
    eval_items: bool,
) -> Result<Option<Document<K::Kept>>, A::Error>
where
    A: SeqAccess<'de>,
    K: StepSink,
{
    let mut items: Vec<Item<K::Kept>> = Vec::new();
    let mut lists = None;
    loop {
        let position = ctx.first_position + items.len();
        ctx.v.push(position);
        let item = seq.next_element_seed(ItemSeed {
            ctx: &mut *ctx,
            position,
            steps_key,
            lists,
        });
        ctx.v.pop();
        let Some(item) = item? else {
            break;
        };
        if lists.is_none() {
            lists = Some(matches!(item, Item::Steps(_)));
        }
        items.push(item);
    }
    if items.is_empty() {
        return Ok(Some(Document {
            form: InputForm::Empty,
            requests: Vec::new(),
        }));
    }
    let lists = lists == Some(true);
    let profiler = !lists
        && !eval_items
        && items.iter().all(
            |i| matches!(i, Item::Object(o) if o.request_number.is_some() && o.steps.is_some()),
        );
    let form = match (lists, profiler) {
        (true, _) => InputForm::Raw,
        (false, true) => InputForm::Profiler,
        (false, false) => InputForm::Eval,
    };
    let mut requests = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, item) in items.into_iter().enumerate() {
        let position = ctx.first_position + i;
        ctx.v.push(position);
        let r = finish_item(ctx.v, item, position, form, steps_key);
        ctx.v.pop();
        match r {
            Some(r) => requests.push(r),
            None => ok = false,
        }
    }
    Ok(ok.then_some(Document { form, requests }))
}

/// Checks an item against the document's form, once all items are read.
fn finish_item<S>(
    v: &mut Validator,
    item: Item<S>,
    position: usize,
    form: InputForm,
    steps_key: &str,
) -> Option<DocRequest<S>> {
    match (form, item) {
        (InputForm::Raw, Item::Steps(steps)) => Some(DocRequest {
            request_number: None,
            external_id: None,
            position,
            eval: None,
            steps: steps?,
        }),
        (InputForm::Raw, other) => {
            v.error(format!(
                "expected a list of steps like the other items, got {}",
                item_kind(&other)
            ));
            None
        }
        (_, Item::Object(o)) if form == InputForm::Profiler => {
            let number = o.request_number.as_ref().and_then(|n| {
                v.push("request_number");
                let number = request_number(v, n);
                v.pop();
                number
            });
            Some(DocRequest {
                request_number: Some(number?),
                external_id: None,
                position,
                eval: None,
                steps: o.steps??,
            })
        }
        (_, Item::Object(o)) => {
            let Some(steps) = o.steps else {
                v.push(steps_key);
                v.error(format!(
                    "field required: an eval item carries its steps in \"{steps_key}\""
                ));
                v.pop();
                return None;
            };
            let external_id = match &o.id {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            };
            let mut eval = o.eval;
            eval.id = o.id.unwrap_or(Value::Null);
            Some(DocRequest {
                request_number: None,
                external_id,
                position,
                eval: Some(eval),
                steps: steps?,
            })
        }
        (_, other) => {
            v.error(format!(
                "expected an eval item object with \"{steps_key}\", got {}",
                item_kind(&other)
            ));
            None
        }
    }
}

fn item_kind<S>(item: &Item<S>) -> &'static str {
    match item {
        Item::Steps(_) => "an array",
        Item::Object(_) => "an object",
        Item::Other(kind) => kind,
    }
}

fn request_number(v: &mut Validator, n: &Value) -> Option<i64> {
    let integral = n.as_i64().or_else(|| {
        n.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    });
    match integral {
        Some(n) if (0..=MAX_REQUEST_NUMBER).contains(&n) => Some(n),
        _ => {
            v.error(format!(
                "expected an integer from 0 to {MAX_REQUEST_NUMBER}, got {}",
                short(n)
            ));
            None
        }
    }
}

struct ItemSeed<'c, 'v, K: StepSink> {
    ctx: &'c mut Ctx<'v, K>,
    position: usize,
    steps_key: &'static str,
    /// What the first item was: step lists (`Some(true)`) or objects; `None` for the first.
    lists: Option<bool>,
}

impl<'de, K: StepSink> DeserializeSeed<'de> for ItemSeed<'_, '_, K> {
    type Value = Item<K::Kept>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, K: StepSink> Visitor<'de> for ItemSeed<'_, '_, K> {
    type Value = Item<K::Kept>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a request object or a list of steps")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        if self.lists == Some(false) {
            // Not the form of the first item: skip it without keeping its steps.
            skip_seq(seq)?;
            return Ok(Item::Other("an array"));
        }
        let steps = read_steps(self.ctx, seq, self.position)?;
        Ok(Item::Steps(steps))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        if self.lists == Some(true) {
            return Ok(Item::Other(drain_map(map)?));
        }
        let mut item = ObjectItem {
            request_number: None,
            id: None,
            eval: EvalItem::default(),
            steps: None,
        };
        let Some(mut next) = first_key(&mut map)? else {
            return Ok(Item::Other("a number"));
        };
        while let Some(key) = next.take() {
            next = self.field(&mut map, &mut item, key)?;
        }
        Ok(Item::Object(Box::new(item)))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Item::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Item::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Item::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Item::Other("a number"))
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Item::Other("a string"))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Item::Other("null"))
    }
}

/// serde_json hands a number to `deserialize_any` as a one-entry map under this key when it keeps
/// numbers exactly (`arbitrary_precision`).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Reads the first key of a map; `None` for a number in disguise (its value is skipped).
fn first_key<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Option<String>>, A::Error> {
    let key = map.next_key::<String>()?;
    if key.as_deref() == Some(NUMBER_TOKEN) {
        map.next_value::<IgnoredAny>()?;
        return Ok(None);
    }
    Ok(Some(key))
}

/// Skips a map that is not wanted where it is; says what it was.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<&'static str, A::Error> {
    let Some(first) = first_key(&mut map)? else {
        return Ok("a number");
    };
    if first.is_some() {
        map.next_value::<IgnoredAny>()?;
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    }
    Ok("an object")
}

impl<K: StepSink> ItemSeed<'_, '_, K> {
    /// One field of an object item; returns the next key.
    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        map: &mut A,
        item: &mut ObjectItem<K::Kept>,
        key: String,
    ) -> Result<Option<String>, A::Error> {
        let ctx = &mut *self.ctx;
        if key == self.steps_key {
            ctx.v.push(&key);
            let steps = map.next_value_seed(StepsSeed {
                ctx: &mut *ctx,
                position: self.position,
            });
            ctx.v.pop();
            let steps = steps?;
            if item.steps.is_some() {
                ctx.v.push(&key);
                ctx.v.error("duplicate key");
                ctx.v.pop();
            }
            item.steps = Some(steps);
            return map.next_key::<String>();
        }
        let slot = match key.as_str() {
            "request_number" => &mut item.request_number,
            "id" => &mut item.id,
            "question" | "answer" | "generated_answer" => {
                let value: Value = map.next_value()?;
                ctx.v.push(&key);
                ctx.v.finite_numbers(&value);
                ctx.v.pop();
                match key.as_str() {
                    "question" => item.eval.question = value,
                    "answer" => item.eval.answer = value,
                    _ => item.eval.generated_answer = value,
                }
                return map.next_key::<String>();
            }
            _ => {
                map.next_value::<IgnoredAny>()?;
                return map.next_key::<String>();
            }
        };
        let value: Value = map.next_value()?;
        ctx.v.push(&key);
        ctx.v.finite_numbers(&value);
        ctx.v.pop();
        *slot = Some(value);
        map.next_key::<String>()
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// A request's steps: a list (each step read, validated and kept on its own), or null for none.
struct StepsSeed<'c, 'v, K: StepSink> {
    ctx: &'c mut Ctx<'v, K>,
    position: usize,
}

impl<'de, K: StepSink> DeserializeSeed<'de> for StepsSeed<'_, '_, K> {
    type Value = Option<Vec<K::Kept>>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Self::Value, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de, K: StepSink> Visitor<'de> for StepsSeed<'_, '_, K> {
    type Value = Option<Vec<K::Kept>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of steps")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        read_steps(self.ctx, seq, self.position)
    }

    // A null list of steps is an empty one (docs/toolkit-semantics.md#input-forms).
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Some(Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let what = drain_map(map)?;
        self.not_steps(what)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        self.not_steps("a boolean")
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        self.not_steps("a number")
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        self.not_steps("a number")
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        self.not_steps("a number")
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        self.not_steps("a string")
    }
}

impl<K: StepSink> StepsSeed<'_, '_, K> {
    fn not_steps<E>(self, got: &str) -> Result<Option<Vec<K::Kept>>, E> {
        self.ctx
            .v
            .error(format!("expected a list of steps, got {got}"));
        Ok(None)
    }
}

/// Reads a list of steps one at a time: each is parsed into a value, validated, and handed to
/// the sink, and only what the sink keeps stays in memory.
fn read_steps<'de, A, K>(
    ctx: &mut Ctx<'_, K>,
    mut seq: A,
    position: usize,
) -> Result<Option<Vec<K::Kept>>, A::Error>
where
    A: SeqAccess<'de>,
    K: StepSink,
{
    let mut out = Vec::new();
    let mut ok = true;
    let mut i = 0usize;
    loop {
        let step = if ctx.steps_from_text {
            let Some(text) = seq.next_element::<Box<RawValue>>()? else {
                break;
            };
            match direct::read_step(text.get(), ctx.v.now()) {
                Some(step) => Some(step),
                None => {
                    // The same parser on the same text: an error here is one the scan for the
                    // step's end let through (its nesting is limited only from here).
                    let raw = serde_json::from_str(text.get())
                        .map_err(|e| A::Error::custom(format!("step {i}: {e}")))?;
                    validate_step(ctx, raw, position, i)
                }
            }
        } else {
            let Some(raw) = seq.next_element::<Value>()? else {
                break;
            };
            validate_step(ctx, raw, position, i)
        };
        i += 1;
        let Some(step) = step else {
            ok = false;
            ctx.invalid = true;
            continue;
        };
        if ctx.invalid {
            // The document is invalid already: validate the rest, keep nothing more.
            continue;
        }
        match ctx.sink.keep(step) {
            Ok(kept) => out.push(kept),
            Err(why) => {
                ctx.refused = Some(why);
                return Err(stop());
            }
        }
    }
    Ok(ok.then_some(out))
}

/// The validator's reading of step `i` of the request at `position`.
fn validate_step<K: StepSink>(
    ctx: &mut Ctx<'_, K>,
    raw: Value,
    position: usize,
    i: usize,
) -> Option<IntermediateStep> {
    ctx.v.push(i);
    ctx.v.finite_numbers(&raw);
    // A step without a UUID gets one derived from its content and place, so that posting the
    // same batch twice yields the same UUID and the retry is recognised as a duplicate.
    let fingerprint = needs_uuid(&raw).then(|| format!("{position}/{i}/{raw}"));
    let step = ctx.v.step(raw);
    ctx.v.pop();
    let mut step = step?;
    if let Some(fp) = fingerprint {
        step.payload.uuid =
            uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, fp.as_bytes()).to_string();
    }
    Some(step)
}

fn needs_uuid(raw: &Value) -> bool {
    raw.get("payload")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.contains_key("UUID"))
}
