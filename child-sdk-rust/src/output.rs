//! What the process's output and its own children need around a stop.

/// Points stdout and stderr at `/dev/null` where their reader is gone (the supervisor was
/// killed and nothing keeps the pipe's other end): writes to them would fail with EPIPE (a
/// `println!` panics, Python raises `BrokenPipeError`) and the stop handlers would be cut short
/// at their first line of output, which could not reach anyone anyway. A stream whose reader is
/// alive is left alone, so nothing a reader could get is thrown away.
pub fn quiet_broken_output() {
    for fd in [libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        if reader_gone(fd) {
            // SAFETY: open and dup2 on fds this process owns; the new fd is closed after.
            unsafe {
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if null >= 0 {
                    libc::dup2(null, fd);
                    libc::close(null);
                }
            }
        }
    }
}

/// Whether `fd` is a pipe or socket whose reading end is closed.
fn reader_gone(fd: libc::c_int) -> bool {
    // SAFETY: fstat writes into the zeroed struct; poll reads one valid pollfd.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) != 0 {
            return false;
        }
        let kind = st.st_mode & libc::S_IFMT;
        if kind != libc::S_IFIFO && kind != libc::S_IFSOCK {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        };
        libc::poll(&mut pfd, 1, 0) == 1 && pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0
    }
}

/// After a stop, as the process exits: SIGTERM to the rest of its process group when it leads
/// it, so that the processes it started end with it standalone as they do under pm (where the
/// supervisor SIGKILLs the group once the main process is gone). The SDK's own process ignores
/// that SIGTERM: it is exiting.
pub fn term_own_group() {
    // SAFETY: getpgrp/getpid have no preconditions; ignoring SIGTERM in a process that exits
    // is sound; kill to our own group only reaches processes of that group.
    unsafe {
        if libc::getpgrp() == libc::getpid() {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
            libc::kill(0, libc::SIGTERM);
        }
    }
}
