//! The Python SDK shipped next to the binary. The npm platform package (and a packaged
//! Electron app's `app.asar.unpacked` copy of it) holds `bin/pm-supervisor` and
//! `python/pm_child/`, the abi3 extension built from the same commit, so that a `.py` service
//! can `import pm_child` with nothing pip-installed. Python services get that folder first on
//! `PYTHONPATH`: the shipped copy wins over one installed in the service's Python, because it
//! is the one that matches this supervisor. `PM_SHIPPED_PYTHONPATH=0` (in the service's `env`
//! or the supervisor's environment) leaves `PYTHONPATH` alone.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Set to `0` (or `false`, `no`, `off`) to keep the shipped folder off `PYTHONPATH`.
pub(crate) const ENV_OPT_OUT: &str = "PM_SHIPPED_PYTHONPATH";

/// `<folder of the binary>/../python` when it holds the `pm_child` package.
pub(crate) fn shipped_dir_for(exe: &Path) -> Option<PathBuf> {
    let dir = exe.parent()?.parent()?.join("python");
    dir.join("pm_child")
        .join("__init__.py")
        .is_file()
        .then_some(dir)
}

/// The shipped folder of the running binary, looked up once.
pub(crate) fn shipped_dir() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| shipped_dir_for(&exe))
    })
    .as_deref()
}

/// The `PYTHONPATH` to give a Python service: `shipped` first, then the one it would have had
/// (`current`); None leaves the variable as it is (nothing shipped, or `opt_out` says so).
pub(crate) fn pythonpath(
    shipped: Option<&Path>,
    current: Option<&OsStr>,
    opt_out: Option<&OsStr>,
) -> Option<OsString> {
    let shipped = shipped?;
    let off = opt_out.and_then(OsStr::to_str).is_some_and(|v| {
        ["0", "false", "no", "off"].contains(&v.trim().to_ascii_lowercase().as_str())
    });
    if off {
        return None;
    }
    let mut value = OsString::from(shipped);
    // An empty entry would put the working folder on sys.path: only a non-empty one is kept.
    if let Some(current) = current.filter(|c| !c.is_empty()) {
        value.push(":");
        value.push(current);
    }
    Some(value)
}

/// [`pythonpath`] for a service with environment overrides `env` (which win over the
/// supervisor's own environment), with this binary's shipped folder.
pub(crate) fn for_service(env: &BTreeMap<String, String>) -> Option<OsString> {
    let var = |name: &str| -> Option<OsString> {
        env.get(name)
            .map(OsString::from)
            .or_else(|| std::env::var_os(name))
    };
    pythonpath(
        shipped_dir(),
        var("PYTHONPATH").as_deref(),
        var(ENV_OPT_OUT).as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_only_next_to_a_bin_folder_holding_the_package() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("bin").join("pm-supervisor");
        assert_eq!(shipped_dir_for(&exe), None);
        let pkg = dir.path().join("python").join("pm_child");
        std::fs::create_dir_all(&pkg).expect("mkdir");
        assert_eq!(
            shipped_dir_for(&exe),
            None,
            "a folder without __init__.py is not the package"
        );
        std::fs::write(pkg.join("__init__.py"), "").expect("write");
        assert_eq!(shipped_dir_for(&exe), Some(dir.path().join("python")));
    }

    #[test]
    fn shipped_first_then_what_the_service_had() {
        let shipped = Path::new("/app/pkg/python");
        let p = |current: Option<&str>, opt_out: Option<&str>| {
            pythonpath(
                Some(shipped),
                current.map(OsStr::new),
                opt_out.map(OsStr::new),
            )
        };
        assert_eq!(p(None, None), Some("/app/pkg/python".into()));
        assert_eq!(p(Some(""), None), Some("/app/pkg/python".into()));
        assert_eq!(p(Some("/a:/b"), None), Some("/app/pkg/python:/a:/b".into()));
        assert_eq!(p(Some("/a"), Some("1")), Some("/app/pkg/python:/a".into()));
        for off in ["0", "false", "OFF", " no "] {
            assert_eq!(p(Some("/a"), Some(off)), None, "{off:?} opts out");
        }
        assert_eq!(
            pythonpath(None, Some(OsStr::new("/a")), None),
            None,
            "nothing shipped"
        );
    }
}
