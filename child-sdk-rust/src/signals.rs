//! SIGTERM and SIGINT as stop triggers, beside the application's own handlers.
//!
//! The SDK's handler sits on top of whatever handler the process had (the app's `ctrlc`,
//! tokio's `signal`, a raw `sigaction`, or the default action), which it keeps as the
//! *app's handler*. A signal starts the stop (the handler only writes the signal's number to a
//! pipe that the thread `pm-child-signals` reads); the app's handler gets the signal once the
//! stop handlers are done ([`deliver`]), and every later one at once. A handler installed
//! later over the SDK's (`ctrlc` does not chain) is noticed ([`keep_on_top`], run by every SDK
//! call and once a second by the signal thread) and becomes the app's handler, with the SDK's
//! back on top. A handler that chains to the one it replaced (signal-hook's, tokio's) calls the
//! SDK's again from within itself; that nested call returns at once.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};

/// The signals the SDK watches.
pub(crate) const SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

/// How often the signal thread checks that the SDK's handler is still on top.
const RECHECK_MS: libc::c_int = 1000;

struct Slot {
    /// The app's handler (`sa_sigaction` of the action the SDK replaced), or SIG_DFL/SIG_IGN.
    prev_handler: AtomicUsize,
    /// Its `sa_flags` (whether it takes `siginfo_t`).
    prev_flags: AtomicI32,
    /// The next signal goes to the app's handler: the stop is being handed to the app.
    deliver: AtomicBool,
    /// The thread inside the SDK's handler for this signal (0: none), to see a chained re-entry.
    inside: AtomicUsize,
}

impl Slot {
    const fn new() -> Slot {
        Slot {
            prev_handler: AtomicUsize::new(libc::SIG_DFL),
            prev_flags: AtomicI32::new(0),
            deliver: AtomicBool::new(false),
            inside: AtomicUsize::new(0),
        }
    }
}

static SLOTS: [Slot; 2] = [Slot::new(), Slot::new()];
static INSTALLED: AtomicBool = AtomicBool::new(false);
/// Once the stop was handed to the app, every signal goes to the app's handler.
static HANDED_OFF: AtomicBool = AtomicBool::new(false);
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

fn slot(sig: libc::c_int) -> Option<&'static Slot> {
    SIGNALS.iter().position(|&s| s == sig).map(|i| &SLOTS[i])
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // Only async-signal-safe calls here: atomics, pthread_self, write, and the app's handler.
    // SAFETY: errno is thread-local; saving and restoring it is what a handler must do.
    let errno = unsafe { *errno_location() };
    if let Some(slot) = slot(sig) {
        // SAFETY: pthread_self has no preconditions (it reads the thread pointer).
        let tid = unsafe { libc::pthread_self() } as usize;
        if slot.inside.load(Ordering::SeqCst) != tid {
            slot.inside.store(tid, Ordering::SeqCst);
            if slot.deliver.swap(false, Ordering::SeqCst) || HANDED_OFF.load(Ordering::SeqCst) {
                // SAFETY: the previous action, as sigaction reported it, called as it expects.
                unsafe { call_prev(slot, sig, info, ctx) };
            } else {
                let fd = PIPE_WRITE.load(Ordering::SeqCst);
                let byte = sig as u8;
                // SAFETY: write is async-signal-safe; a full pipe only drops a repeated signal.
                unsafe { libc::write(fd, (&byte as *const u8).cast(), 1) };
            }
            slot.inside.store(0, Ordering::SeqCst);
        }
    }
    // SAFETY: see above.
    unsafe { *errno_location() = errno };
}

#[cfg(target_os = "linux")]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: always valid for the calling thread.
    unsafe { libc::__errno_location() }
}

#[cfg(not(target_os = "linux"))]
unsafe fn errno_location() -> *mut libc::c_int {
    // SAFETY: always valid for the calling thread.
    unsafe { libc::__error() }
}

/// Calls the app's handler for `sig` the way the kernel would have.
///
/// # Safety
/// Only from the SDK's signal handler, with the arguments it got.
unsafe fn call_prev(
    slot: &Slot,
    sig: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
) {
    let handler = slot.prev_handler.load(Ordering::SeqCst);
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN || handler == 0 {
        return;
    }
    let flags = slot.prev_flags.load(Ordering::SeqCst);
    // SAFETY: `handler` is a function pointer that sigaction returned for this signal, of the
    // kind its flags say.
    unsafe {
        if flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                std::mem::transmute(handler as *const ());
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(libc::c_int) = std::mem::transmute(handler as *const ());
            f(sig);
        }
    }
}

fn current(sig: libc::c_int) -> Option<libc::sigaction> {
    // SAFETY: sigaction with a null new action only reads the current one into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(sig, std::ptr::null(), &mut old) == 0).then_some(old)
    }
}

fn ours() -> usize {
    on_signal as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize
}

/// Puts the SDK's handler on top for `sig`, keeping the handler it replaces as the app's.
/// With `over_defaults` false, a default or ignored disposition the app set after the SDK's is
/// respected.
fn install(sig: libc::c_int, over_defaults: bool) -> bool {
    let Some(slot) = slot(sig) else { return false };
    let Some(old) = current(sig) else {
        return false;
    };
    if old.sa_sigaction == ours() {
        return true;
    }
    if !over_defaults && (old.sa_sigaction == libc::SIG_DFL || old.sa_sigaction == libc::SIG_IGN) {
        return false;
    }
    slot.prev_flags.store(old.sa_flags, Ordering::SeqCst);
    slot.prev_handler.store(old.sa_sigaction, Ordering::SeqCst);
    // SAFETY: installs an async-signal-safe handler with an empty mask.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = ours();
        act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, std::ptr::null_mut()) == 0
    }
}

/// Installs the SDK's handlers and returns the pipe the signals' numbers arrive on, or None if
/// they are installed already (or cannot be).
pub(crate) fn start() -> Option<RawFd> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return None;
    }
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two fds into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return None;
    }
    PIPE_WRITE.store(fds[1], Ordering::SeqCst);
    for sig in SIGNALS {
        install(sig, true);
    }
    Some(fds[0])
}

/// Puts the SDK's handlers back on top where another one replaced them (a `ctrlc` or a raw
/// `sigaction` installed after the SDK); the replacing handler becomes the app's handler.
pub(crate) fn keep_on_top() {
    if INSTALLED.load(Ordering::SeqCst) {
        for sig in SIGNALS {
            install(sig, false);
        }
    }
}

/// Whether the app has a handler of its own for `sig` (before or after the SDK's).
pub(crate) fn app_handles(sig: libc::c_int) -> bool {
    keep_on_top();
    slot(sig).is_some_and(|s| {
        let h = s.prev_handler.load(Ordering::SeqCst);
        h != libc::SIG_DFL && h != libc::SIG_IGN && h != 0
    })
}

/// Hands `sig` to the app's handler (once), and from now on every signal.
pub(crate) fn deliver(sig: libc::c_int) {
    if let Some(slot) = slot(sig) {
        slot.deliver.store(true, Ordering::SeqCst);
        // SAFETY: kill to this process with a signal the SDK handles.
        unsafe { libc::kill(libc::getpid(), sig) };
    }
}

/// From now on signals go straight to the app's handlers.
pub(crate) fn hand_off() {
    HANDED_OFF.store(true, Ordering::SeqCst);
}

/// Waits for the next signal number on the pipe (re-checking every second that the SDK's
/// handler is on top). Returns None when the pipe fails.
pub(crate) fn next(read: RawFd) -> Option<libc::c_int> {
    loop {
        let mut pfd = libc::pollfd {
            fd: read,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, RECHECK_MS) };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return None;
        }
        keep_on_top();
        if n == 0 {
            continue;
        }
        let mut byte = 0u8;
        // SAFETY: reads one byte into `byte`.
        let got = unsafe { libc::read(read, (&mut byte as *mut u8).cast(), 1) };
        if got == 1 {
            return Some(libc::c_int::from(byte));
        }
    }
}
