//! The runbook's configuration reference is generated from the
//! configuration type: every setting, its variable, its default (from
//! `Config::default()`) and its meaning (the field's doc comment in
//! `src/config.rs`). The test fails when `docs/OPERATIONS.md` differs, and
//! says how to regenerate it.

use std::path::Path;

use transcript_gateway::config::Config;

const START: &str = "<!-- config-reference:start (generated: do not edit) -->";
const END: &str = "<!-- config-reference:end -->";

/// Each field of `pub struct Config` with its doc comment, in order.
fn documented_fields(source: &str) -> Vec<(String, String)> {
    let body = source
        .split_once("pub struct Config {")
        .and_then(|(_, rest)| rest.split_once("\n}\n"))
        .map(|(body, _)| body)
        .expect("src/config.rs declares `pub struct Config { ... }`");
    let mut fields = Vec::new();
    let mut doc: Vec<String> = Vec::new();
    for line in body.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim().to_string());
        } else if let Some(rest) = line.strip_prefix("pub ") {
            let name = rest
                .split(':')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            fields.push((name, doc.join(" ")));
            doc.clear();
        }
    }
    fields
}

/// A default as the table shows it.
fn shown(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "–".to_string(),
        serde_json::Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

/// The generated table.
fn reference() -> String {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config.rs"))
            .expect("read src/config.rs");
    let defaults = serde_json::to_value(Config::default()).expect("defaults");
    let mut out =
        String::from("| variable | file key | default | meaning |\n| --- | --- | --- | --- |\n");
    for (name, doc) in documented_fields(&source) {
        let default = defaults.get(&name).map(shown).unwrap_or_else(|| "?".into());
        let variable = format!("TG_{}", name.to_ascii_uppercase());
        // The variable has its own column: not again in the meaning.
        let meaning = doc
            .replace(&format!(" (`{variable}`)"), "")
            .replace(&format!("(`{variable}`, "), "(")
            .replace(&format!("(`{variable}`); "), "; ")
            .replace('|', "\\|");
        out.push_str(&format!(
            "| `{variable}` | `{name}` | {default} | {meaning} |\n"
        ));
    }
    out
}

#[test]
fn the_runbook_lists_every_setting_with_its_default_and_meaning() {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config.rs"))
            .unwrap();
    let fields = documented_fields(&source);
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    let mut keys = Config::keys();
    let mut listed: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    keys.sort();
    listed.sort();
    assert_eq!(
        listed, keys,
        "every setting, and only settings, are fields read from src/config.rs"
    );
    for (name, doc) in &fields {
        assert!(
            !doc.is_empty(),
            "setting {name} has no doc comment to explain it"
        );
    }

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/OPERATIONS.md");
    let text = std::fs::read_to_string(&path).expect("docs/OPERATIONS.md");
    let (before, rest) = text.split_once(START).expect("the start marker");
    let (current, after) = rest.split_once(END).expect("the end marker");
    let wanted = format!("\n{}", reference());
    if current == wanted {
        return;
    }
    if std::env::var_os("TG_TEST_UPDATE_DOCS").is_some() {
        std::fs::write(&path, format!("{before}{START}{wanted}{END}{after}")).unwrap();
        return;
    }
    panic!(
        "docs/OPERATIONS.md's configuration reference differs from src/config.rs; regenerate it with\n  \
         TG_TEST_UPDATE_DOCS=1 cargo test --features failpoints,conformance --test integration runbook"
    );
}
