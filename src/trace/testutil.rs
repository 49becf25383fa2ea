//! What the trace layer's unit tests share.

use serde_json::Value;

/// The input document of every fixture case (`tests/fixtures/cases/*/input.json[.gz]`).
pub(crate) fn fixture_documents() -> Vec<Value> {
    let cases = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cases");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(cases).expect("the fixture cases") {
        let case = entry.expect("a fixture case").path();
        docs.push(match std::fs::File::open(case.join("input.json.gz")) {
            Ok(gz) => serde_json::from_reader(flate2::read::GzDecoder::new(gz)).expect("JSON"),
            Err(_) => {
                serde_json::from_slice(&std::fs::read(case.join("input.json")).expect("an input"))
                    .expect("JSON")
            }
        });
    }
    docs
}
