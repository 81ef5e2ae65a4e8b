//! `pm-supervisor monit` in a real terminal: tmux runs it in a shell, `send-keys` types,
//! `capture-pane` reads the screen. Each test has its own tmux server (its socket in the test's
//! folder), killed when the test ends, however it ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::support::{BIN, Conn, PATIENCE, Supervisor, TestDir, poll};

/// A tmux server with one session, `monit`, running `sh` with the test's environment.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn start(t: &TestDir, width: u16, height: u16) -> Tmux {
        let socket = t.path().join("tmux.sock");
        let tmux = Tmux { socket };
        let shell = format!(
            "env PM_TEST_DIR={dir} PM_RUNTIME_DIR={dir}/rt PS1='pm$ ' sh",
            dir = t.path().display()
        );
        tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-s",
            "monit",
            &shell,
        ]);
        // The prompt: the shell is ready for keys.
        tmux.wait_screen("the shell's prompt", |s| s.contains("pm$"));
        tmux
    }

    /// Runs a tmux command against this server; it must succeed.
    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"])
            .args(args)
            // The server is marked as the test's, so teardown finds it even if kill-server
            // cannot run; and a test run from inside tmux gets its own server all the same.
            .env(
                "PM_TEST_DIR",
                self.socket.parent().expect("the test folder"),
            )
            .env("SHELL", "/bin/sh")
            .env_remove("TMUX")
            .output()
            .unwrap_or_else(|e| {
                panic!("tmux is needed for this test (`make test` installs it): {e}")
            });
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Types `text` and presses Enter.
    fn type_line(&self, text: &str) {
        self.run(&["send-keys", "-t", "monit", "-l", text]);
        self.run(&["send-keys", "-t", "monit", "Enter"]);
    }

    /// Presses keys (tmux key names: `j`, `Enter`, `Escape`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "monit"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// What the pane shows now.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "monit"]).stdout)
            .into_owned()
    }

    /// A tmux format of the pane (`#{alternate_on}`).
    fn format(&self, f: &str) -> String {
        let out = self.run(&["display-message", "-p", "-t", "monit", f]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until the screen satisfies `pred`; returns it.
    fn wait_screen(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        poll(PATIENCE, || {
            let s = self.screen();
            pred(&s).then_some(s)
        })
        .unwrap_or_else(|| {
            panic!(
                "the screen never showed {what}; it shows:\n{}",
                self.screen()
            )
        })
    }

    /// Waits until the pane is (or is not) on the alternate screen.
    fn wait_alternate(&self, on: bool) {
        let want = if on { "1" } else { "0" };
        poll(PATIENCE, || {
            (self.format("#{alternate_on}") == want).then_some(())
        })
        .unwrap_or_else(|| {
            panic!(
                "alternate screen never {}; the screen:\n{}",
                if on { "on" } else { "off" },
                self.screen()
            )
        });
    }

    /// Checks that the terminal is usable by a plain shell again: the cursor is shown, and the
    /// line discipline is back to cooked mode (in raw mode Enter sends a bare CR, which `sh`
    /// does not take as the end of a line, and `stty` would say `-icanon`).
    fn assert_clean(&self, marker: u32) {
        self.wait_alternate(false);
        assert_eq!(self.format("#{cursor_flag}"), "1", "the cursor is hidden");
        self.type_line(&format!(
            "stty -a | grep -q -- -icanon || echo cooked-$(({marker}+1))"
        ));
        let want = format!("cooked-{}", marker + 1);
        self.wait_screen(&format!("{want:?} (a cooked terminal)"), |s| {
            s.contains(&want)
        });
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .env_remove("TMUX")
            .output();
    }
}

/// The rows of `ls`.
fn rows(t: &TestDir) -> Vec<Value> {
    let reply = Conn::open(t).ask(json!({"type": "list"}));
    reply["result"].as_array().cloned().unwrap_or_default()
}

/// The pid of the running service `name`, once it runs.
fn pid_of(t: &TestDir, name: &str) -> i64 {
    poll(PATIENCE, || {
        rows(t)
            .into_iter()
            .find(|r| r["name"] == name && r["state"] == "running")
            .and_then(|r| r["pid"].as_i64())
    })
    .unwrap_or_else(|| panic!("{name} never ran: {:?}", rows(t)))
}

/// A supervisor running `alpha` and `beta`, each writing a line to its log file and sleeping.
fn two_services(t: &TestDir) -> (Supervisor, PathBuf) {
    let service = |name: &str| {
        json!({
            "name": name,
            "script": "/bin/sh",
            "args": ["-c", format!("echo {name} says hello; exec sleep 1000")],
            "log": format!("{name}.log"),
        })
    };
    let config = t.config(json!([service("alpha"), service("beta")]));
    let sup = t.run(&config);
    pid_of(t, "alpha");
    pid_of(t, "beta");
    (sup, config)
}

/// The pid of the running `monit` of this test.
fn monit_pid(t: &TestDir) -> i32 {
    poll(PATIENCE, || {
        t.live()
            .into_iter()
            .find(|(_, cmd)| cmd.starts_with(BIN) && cmd.contains(" monit "))
            .map(|(pid, _)| pid)
    })
    .expect("monit runs")
}

/// Runs monit in the pane; the shell then prints its exit status.
fn start_monit(tmux: &Tmux, config: &Path) {
    tmux.type_line(&format!(
        "{BIN} monit --config {}; echo exit-status-$?",
        config.display()
    ));
    tmux.wait_alternate(true);
}

/// The screen's line that starts with `prefix`.
fn line_starting<'a>(screen: &'a str, prefix: &str) -> Option<&'a str> {
    screen.lines().find(|l| l.starts_with(prefix))
}

#[test]
fn monit_shows_every_service_restarts_one_survives_resizes_and_leaves_the_terminal_clean() {
    let t = TestDir::new();
    let (_sup, config) = two_services(&t);
    let tmux = Tmux::start(&t, 120, 40);
    start_monit(&tmux, &config);

    // Each service, its state and pid, and the selected one's log tail.
    let alpha = pid_of(&t, "alpha");
    let beta = pid_of(&t, "beta");
    tmux.wait_screen("both services running, and alpha's log", |s| {
        s.contains("alpha")
            && s.contains("beta")
            && s.contains(&alpha.to_string())
            && s.contains(&beta.to_string())
            && s.matches("running").count() >= 2
            && s.contains("out  alpha says hello")
    });

    // Select beta (its log shows), then `r`: beta gets a new process, alpha keeps its own.
    tmux.keys(&["j"]);
    tmux.wait_screen("beta's log", |s| s.contains("out  beta says hello"));
    tmux.keys(&["r"]);
    let new_beta = poll(PATIENCE, || {
        let pid = pid_of(&t, "beta");
        (pid != beta).then_some(pid)
    })
    .unwrap_or_else(|| panic!("beta was not restarted: {:?}", rows(&t)));
    assert_eq!(pid_of(&t, "alpha"), alpha, "alpha was restarted too");
    tmux.wait_screen("beta's new pid", |s| s.contains(&new_beta.to_string()));

    // Smaller: the view is drawn again at the new size, and still answers keys.
    tmux.run(&["resize-window", "-t", "monit", "-x", "80", "-y", "24"]);
    tmux.wait_screen("the table at 80 columns", |s| {
        line_starting(s, "┌ services").is_some_and(|l| l.chars().count() == 80 && l.ends_with('┐'))
            && s.contains("alpha")
            && s.contains(&new_beta.to_string())
            && s.lines().count() <= 24
    });
    tmux.keys(&["?"]);
    tmux.wait_screen("the help", |s| s.contains("restart it"));
    tmux.keys(&["?"]);
    tmux.wait_screen("the help closed", |s| !s.contains("restart it"));

    // `q`: the shell's screen is back, and the terminal is usable.
    tmux.keys(&["q"]);
    tmux.wait_screen("monit's exit status", |s| s.contains("exit-status-0"));
    tmux.assert_clean(41);
    let s = tmux.screen();
    assert!(
        !s.contains("┌ services"),
        "the view is left on the screen:\n{s}"
    );

    // SIGTERM restores the terminal too, and exits 143.
    start_monit(&tmux, &config);
    tmux.wait_screen("the view", |s| s.contains("alpha"));
    let pid = monit_pid(&t);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM).expect("signal monit");
    tmux.wait_screen("monit's exit status", |s| s.contains("exit-status-143"));
    tmux.assert_clean(99);
    // SIGHUP: the terminal went away (a closed window, a dropped ssh session).
    tmux.type_line("clear");
    start_monit(&tmux, &config);
    tmux.wait_screen("the view", |s| s.contains("alpha"));
    let pid = monit_pid(&t);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP).expect("signal monit");
    tmux.wait_screen("monit's exit status", |s| s.contains("exit-status-129"));
    tmux.assert_clean(199);
}

#[test]
fn monit_shows_a_supervisor_that_went_away_and_keeps_running() {
    let t = TestDir::new();
    let (mut sup, config) = two_services(&t);
    let tmux = Tmux::start(&t, 100, 30);
    start_monit(&tmux, &config);
    tmux.wait_screen("both services", |s| {
        s.contains("alpha") && s.contains("beta")
    });
    let monit = monit_pid(&t);

    sup.signal(Signal::SIGTERM);
    assert!(sup.wait(PATIENCE).is_some(), "the supervisor did not exit");
    tmux.wait_screen("that the supervisor is gone", |s| {
        s.contains("supervisor unreachable")
    });
    assert!(
        TestDir::alive(monit.into()),
        "monit died with the supervisor"
    );
    // Its log files are still followed: the last lines stay on the screen.
    assert!(tmux.screen().contains("alpha says hello"));

    tmux.keys(&["q"]);
    tmux.assert_clean(7);
}

#[test]
fn monit_without_a_terminal_says_so_and_exits_1() {
    let t = TestDir::new();
    let config = t.config(json!([]));
    // stdin and stdout are not terminals (a pipe, a file): no escape sequences are written.
    let status = crate::support::status_within(
        &mut t.command(&["monit", "--config", config.to_str().expect("utf-8 path")]),
        PATIENCE,
    )
    .expect("monit exits");
    assert_eq!(status.code(), Some(1));
    assert!(
        t.cli_stderr().contains("monit draws on a terminal"),
        "{}",
        t.cli_stderr()
    );
    let out = std::fs::read(t.path().join("cli-stdout.txt")).expect("stdout file");
    assert!(out.is_empty(), "wrote to a non-terminal: {out:?}");
}
