//! The `pm-supervisor` binary: the command line lives in the library.

fn main() -> std::process::ExitCode {
    pm_supervisor::main()
}
