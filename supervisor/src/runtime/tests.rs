use super::instance::parse_state;
use super::*;

#[test]
fn state_entries_must_name_one_process() {
    let left = parse_state(
        br#"{"supervisor":1,"token":"a1b2","groups":[[4242,99],[4243,0],[0,5],[-1,5],[1,5]]}"#,
    )
    .expect("parses");
    assert_eq!(left.groups, vec![(4242, 99)]);
    assert_eq!(left.refused, 4);
    assert_eq!(left.token, "a1b2");
    assert!(parse_state(br#"{"supervisor":1,"token":"a-b","groups":[]}"#).is_err());
    assert!(parse_state(br#"{"supervisor":1,"token":"","groups":[],"x":1}"#).is_err());
    assert!(parse_state(b"[]").is_err());
}

#[test]
fn instance_names_stay_short() {
    let name = instance_name(Path::new(&format!("/a/{}.json", "x".repeat(300))));
    assert!(name.len() <= 32 + 9, "{name}");
}

#[test]
fn config_files_name_valid_instances() {
    for file in [
        "/a/services.json",
        "/a/-x.json",
        "/a/.json",
        "/a/ü ber.json",
        "/",
    ] {
        let name = instance_name(Path::new(file));
        check_instance_name(&name).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// The rules are the supervisor's; the Node manager checks its default names against the
/// same vectors.
#[test]
fn instance_name_vectors() {
    let cases = crate::control::vectors();
    let cases: Vec<_> = cases
        .iter()
        .filter(|c| c.get("instance").is_some())
        .collect();
    assert!(cases.len() > 10);
    for case in cases {
        let name = case["instance"].as_str().expect("instance");
        let valid = case["valid"].as_bool().expect("valid");
        assert_eq!(check_instance_name(name).is_ok(), valid, "{name:?}");
    }
}

#[test]
fn instance_names_say_what_is_wrong() {
    let why = |n: &str| check_instance_name(n).expect_err(n);
    assert!(why("").contains("it is empty"));
    assert!(why("has space").contains("holds ' ' at character 4"));
    assert!(why("../x").contains("holds '/' at character 3"));
    assert!(why(".hidden").contains("starts with '.'"));
    assert!(why("-x").contains("starts with '-'"));
    assert!(why(&"x".repeat(65)).contains("65 bytes long"));
    for ok in ["my-app_1.0", "a", "App.2", &"x".repeat(64)] {
        check_instance_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}
