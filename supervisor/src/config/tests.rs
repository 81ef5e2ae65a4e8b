use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::config::spec::check_name;

fn parse(text: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("svc")).expect("mkdir");
    Config::parse(&dir.path().join("services.json"), text).map_err(|e| {
        e.to_string()
            .replace(&dir.path().display().to_string(), "DIR")
    })
}

#[test]
fn defaults_are_filled_in() {
    let cfg = parse(r#"{"services":[{"script":"a.js","cwd":"svc"}]}"#).expect("valid");
    let s = &cfg.services[0];
    assert_eq!(s.kill_timeout, Duration::from_millis(200));
    assert_eq!(s.restart_at, DEFAULT_RESTART_AT.to_vec());
    assert_eq!(s.restart_ok, Duration::from_secs(1800));
    assert!(s.cwd.ends_with("svc"));
}

#[test]
fn unknown_field_names_place_and_field() {
    let err = parse("{\"services\": [\n  {\"script\": \"a.js\"},\n  {\"scirpt\": \"b.js\"}\n]}")
        .expect_err("invalid");
    assert!(err.starts_with("DIR/services.json:3:"), "{err}");
    assert!(err.contains("services[1]"), "{err}");
    assert!(err.contains("unknown field `scirpt`"), "{err}");
}

#[test]
fn wrong_type_names_the_field() {
    let err = parse("{\"services\": [{\"script\": \"a.js\", \"killTimeout\": \"soon\"}]}")
        .expect_err("invalid");
    assert!(err.contains("services[0].killTimeout"), "{err}");
    assert!(err.contains("invalid type"), "{err}");
}

#[test]
fn missing_script() {
    let err = parse("{\"services\": [{\"name\": \"x\"}]}").expect_err("invalid");
    assert!(err.contains("missing field `script`"), "{err}");
    assert!(err.contains("services[0]"), "{err}");
}

#[test]
fn missing_cwd_points_at_the_value() {
    let err = parse("{\"services\": [\n {\"script\": \"a.js\",\n  \"cwd\": \"nope\"}]}")
        .expect_err("invalid");
    assert_eq!(
        err,
        "DIR/services.json:3:10: services[0].cwd: folder does not exist: DIR/nope"
    );
}

#[test]
fn env_accepts_numbers_and_rejects_objects() {
    let cfg =
        parse(r#"{"services":[{"script":"a","env":{"PORT":3000,"DEBUG":true}}]}"#).expect("valid");
    assert_eq!(cfg.services[0].env["PORT"], "3000");
    assert_eq!(cfg.services[0].env["DEBUG"], "true");
    let err = parse(r#"{"services":[{"script":"a","env":{"X":{"y":1}}}]}"#).expect_err("invalid");
    assert!(
        err.contains("services[0].env.X: invalid type: map, expected a string, number or boolean"),
        "{err}"
    );
}

#[test]
fn names_that_could_forge_lines_are_refused() {
    for name in ["a\nb", "\u{1b}[2J", "x|y", "\u{202e}abc", "\u{85}"] {
        let text = format!(
            "{{\"services\": [{{\"script\": \"a\", \"name\": {}}}]}}",
            serde_json::to_string(name).expect("json")
        );
        let err = parse(&text).expect_err(name);
        assert!(err.contains("services[0].name: must not contain"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err:?}");
    }
    for name in ["web api", "api-2", "Ünïcode ✓", "a.b_c"] {
        check_name(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(check_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
}

#[test]
fn rotation_bounds() {
    let err = parse(r#"{"services":[{"script":"a","logMaxSize":100}]}"#).expect_err("small");
    assert!(
        err.contains("logMaxSize: must be 0 (never rotate) or at least 4096"),
        "{err}"
    );
    parse(r#"{"services":[{"script":"a","logMaxSize":0,"logKeep":1000}]}"#).expect("valid");
    let err = parse(r#"{"services":[{"script":"a","logKeep":1001}]}"#).expect_err("many");
    assert!(err.contains("logKeep: keeps at most 1000 files"), "{err}");
}

#[test]
fn a_log_that_is_not_a_regular_file_is_refused() {
    let err = parse(r#"{"services":[{"script":"a","log":"svc"}]}"#).expect_err("folder");
    assert!(
        err.contains("services[0].log: DIR/svc is a folder"),
        "{err}"
    );
    let err = parse(r#"{"services":[{"script":"a","log":"/dev/null"}]}"#).expect_err("dev");
    assert!(err.contains("/dev/null is a device"), "{err}");
}

#[test]
fn bom_and_top_level_arrays_are_explained() {
    let err = parse("\u{feff}{\"services\": []}").expect_err("bom");
    assert!(
        err.contains(":1:1: the file starts with a UTF-8 byte-order mark"),
        "{err}"
    );
    let err = parse("\n  [{\"script\": \"a\"}]").expect_err("array");
    assert!(err.contains(":2:3: the file must be an object"), "{err}");
}

#[test]
fn not_json_at_all() {
    let err = parse("{\"services\": [").expect_err("invalid");
    assert!(err.starts_with("DIR/services.json:1:"), "{err}");
}

proptest! {
    /// The config parser never panics: any text is a config or an error naming a place.
    #[test]
    fn config_parser_never_panics(text in ".{0,200}") {
        match Config::parse(Path::new("/nonexistent/services.json"), &text) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.to_string().starts_with("/nonexistent/services.json:")),
        }
    }

    /// ... also on near-misses of valid configs.
    #[test]
    fn config_parser_near_misses(
        field in prop::sample::select(vec!["script", "name", "args", "cwd", "log", "env", "restartAt", "restartOk", "stripANSI", "interpreter", "nodePath", "killTimeout", "logMaxSize", "logKeep", "bogus"]),
        value in prop::sample::select(vec!["1", "-1", "\"x\"", "[]", "[1,2]", "{}", "null", "true", "1e99", "\"\"", "[\"a\",1]", "{\"A\":{}}"]),
    ) {
        let text = format!("{{\"services\":[{{\"script\":\"a.js\",\"{field}\":{value}}}]}}");
        let _ = Config::parse(Path::new("/tmp/services.json"), &text);
    }
}

#[test]
fn max_memory_takes_bytes_and_units() {
    let bytes = |v: &str| {
        parse(&format!(
            r#"{{"services":[{{"script":"a.js","maxMemory":{v}}}]}}"#
        ))
        .map(|c| c.services[0].max_memory)
    };
    assert_eq!(bytes("524288000"), Ok(Some(524_288_000)));
    assert_eq!(bytes(r#""500M""#), Ok(Some(500 << 20)));
    assert_eq!(bytes(r#""500mb""#), Ok(Some(500 << 20)));
    assert_eq!(bytes(r#""1.5G""#), Ok(Some(3 << 29)));
    assert_eq!(bytes(r#""2048K""#), Ok(Some(2 << 20)));
    for bad in [
        r#""500X""#,
        r#""-1M""#,
        r#""M""#,
        r#""1e3M""#,
        "500",
        r#""""#,
        "-5",
        "true",
    ] {
        let err = bytes(bad).expect_err(bad);
        assert!(err.contains("services[0].maxMemory"), "{bad}: {err}");
        assert!(err.starts_with("DIR/services.json:1:"), "{bad}: {err}");
    }
}

#[test]
fn watchdog_ms_is_bounded() {
    let ok = parse(r#"{"services":[{"script":"a.js","watchdogMs":1000}]}"#).expect("valid");
    assert_eq!(ok.services[0].watchdog, Some(Duration::from_secs(1)));
    for bad in ["50", "0", "2147483648"] {
        let err = parse(&format!(
            r#"{{"services":[{{"script":"a.js","watchdogMs":{bad}}}]}}"#
        ))
        .expect_err(bad);
        assert!(
            err.contains("watchdogMs: must be 100 to 2147483647 ms"),
            "{err}"
        );
    }
}

#[test]
fn a_dependency_cycle_is_refused_where_it_closes() {
    let text = "{\"services\": [\n  {\"name\": \"db\", \"script\": \"a.js\", \"dependsOn\": [\"web\"]},\n  {\"name\": \"api\", \"script\": \"a.js\", \"dependsOn\": [\"db\"]},\n  {\"name\": \"web\", \"script\": \"a.js\",\n   \"dependsOn\": [\"api\"]}\n]}";
    let err = parse(text).expect_err("cycle");
    assert_eq!(
        err,
        "DIR/services.json:3:51: services[1].dependsOn[0]: dependency cycle: db -> web -> api -> db"
    );
    let chain = text.replace("[\"web\"]", "[]");
    let cfg = parse(&chain).expect("a chain is fine");
    assert_eq!(cfg.services[2].depends_on, ["api"]);
}

#[test]
fn a_dependency_on_nobody_or_on_itself_is_refused() {
    let err = parse(
        "{\"services\": [\n {\"name\": \"api\", \"script\": \"a.js\", \"dependsOn\": [\"db\"]}\n]}",
    )
    .expect_err("missing");
    assert_eq!(
        err,
        "DIR/services.json:2:50: services[0].dependsOn[0]: no service is named \"db\""
    );
    let err = parse(r#"{"services":[{"name":"a","script":"a.js","dependsOn":["a"]}]}"#)
        .expect_err("itself");
    assert!(err.contains("cannot depend on itself"), "{err}");
}

#[test]
fn watch_true_is_the_script_folder_and_globs_are_checked() {
    let cfg = parse(
        r#"{"services":[{"script":"svc/a.js","watch":true},{"script":"a.js","cwd":"svc","watch":["src/**/*.js","conf"]},{"script":"b.js","watch":false}]}"#,
    )
    .expect("valid");
    assert!(cfg.services[0].watch[0].ends_with("svc"));
    assert!(cfg.services[1].watch[0].ends_with("svc/src/**/*.js"));
    assert!(cfg.services[2].watch.is_empty() && cfg.services[2].watch_off);
    let err = parse(r#"{"services":[{"script":"a.js","watch":["src/[a"]}]}"#).expect_err("glob");
    assert!(
        err.contains("services[0].watch[0]: not a valid glob"),
        "{err}"
    );
}
