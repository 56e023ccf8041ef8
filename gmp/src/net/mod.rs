//! Networking on the netpoller: TCP, UDP and Unix sockets whose blocking
//! operations park the goroutine, not the thread (Go's `net` package over
//! `internal/poll` and the runtime's netpoller).
//!
//! ```
//! use std::io::{Read, Write};
//!
//! gmp::run(|| {
//!     let listener = gmp::net::TcpListener::bind("127.0.0.1:0").unwrap();
//!     let addr = listener.local_addr().unwrap();
//!     gmp::go(move || {
//!         let (mut conn, _) = listener.accept().unwrap();
//!         let mut buf = [0u8; 5];
//!         conn.read_exact(&mut buf).unwrap();
//!         conn.write_all(&buf).unwrap();
//!     });
//!     let mut c = gmp::net::TcpStream::connect(addr).unwrap();
//!     c.write_all(b"hello").unwrap();
//!     let mut back = [0u8; 5];
//!     c.read_exact(&mut back).unwrap();
//!     assert_eq!(&back, b"hello");
//! });
//! ```
//!
//! ## The design
//! The types mirror `std::net` / `std::os::unix::net` method for method
//! (`bind`, `accept`, `incoming`, `connect`, `peer_addr`, `local_addr`,
//! `shutdown`, `set_read_timeout`, `set_write_timeout`, `set_nodelay`, ...)
//! and implement [`std::io::Read`] and [`std::io::Write`] (also for `&T`,
//! so one goroutine can read while another writes). Underneath:
//!
//! * Every descriptor is **non-blocking** and, as soon as it is used inside
//!   a runtime, registered once (edge-triggered, both directions) with the
//!   runtime's netpoller (`gmp_sched::netpoll::Netpoll`: one epoll shard
//!   per P; the two ends of a loopback connection inside the runtime share
//!   a shard, so one CPU runs both).
//! * An operation is tried first; only on `WouldBlock` does the goroutine
//!   park in `Netpoll::wait(pd, mode)` (Go's `pollDesc.waitRead`), and it
//!   retries when the poller readies it. The M that ran it goes on running
//!   other goroutines; an idle M blocks in `epoll_wait` until the next timer.
//! * One exception, where the kernel can tell us: a TCP stream that has
//!   had to wait for data turns on `TCP_INQ`, and when a read reports that
//!   it emptied the receive queue, the next read waits for an epoll edge
//!   before trying instead of paying a `recvfrom` that can only say
//!   `EAGAIN` (a request/response peer reads before the answer can exist;
//!   this takes an echo round trip from 6 syscalls to 4). Bytes arriving
//!   after that read always fire a new edge, so none is missed; the
//!   argument is beside `gmp_sched::netpoll::recv_inq`.
//! * At most one goroutine waits per direction (the netpoller's contract,
//!   Go's `fdMutex`): operations in one direction are serialized by a small
//!   lock that parks contenders (`gmp_sched::park`), so sharing a `&TcpStream`
//!   between many readers is safe, never a panic. Uncontended, it costs one
//!   CAS to take and one to release.
//! * Timeouts (`set_read_timeout`, `set_write_timeout`, `connect_timeout`)
//!   follow std: they bound each operation. They are netpoll deadlines
//!   (timers on the P); an expired one ends the wait with
//!   [`ErrorKind::TimedOut`](std::io::ErrorKind::TimedOut).
//! * Errors are the OS's, as `io::Error`s (`ConnectionRefused`,
//!   `ConnectionReset`, `EMFILE` from `accept`, ...), never panics. A
//!   listener whose `accept` failed is still usable: the pending connection
//!   stays queued and the next `accept` tries again.
//! * The descriptor is deregistered from epoll *before* it is closed (in
//!   `Drop`, or by `into_std`), so a reused descriptor number never receives
//!   a stale registration.
//! * Outside a runtime (a plain thread) the same types work: the thread
//!   blocks in `poll(2)` instead of parking. Inside a goroutine a socket that
//!   could not be registered falls back to `poll(2)` inside
//!   [`crate::blocking`], so it still does not stall the other goroutines.
//! * Name resolution (`ToSocketAddrs`) may block in the OS resolver; it runs
//!   inside [`crate::blocking`].
//!
//! A socket belongs to the runtime that first registered it; use it from
//! that runtime's goroutines or from plain threads.
//!
//! ## Conversions
//! `From<std::net::TcpStream>` (and the others) switch the socket to
//! non-blocking mode and register it; `into_std` deregisters it and returns
//! it in blocking mode.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::{Duration, Instant};

use gmp_g::WaitReason;
use gmp_sched::netpoll::{Mode, PollDesc, WaitError};
use gmp_sched::park::{park, Waiter};
use gmp_sched::Sched;

/// The four std timeout methods of a socket type, all through its
/// `PollIo` (field `io`). Expands inside the type's `impl` block.
macro_rules! io_timeouts {
    () => {
        /// Bounds each read or receive (`ErrorKind::TimedOut` past it);
        /// `None` clears it. A zero duration is an error, as in std.
        pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
            self.io.set_timeout(Mode::Read, d)
        }

        /// Bounds each write or send, like [`set_read_timeout`](Self::set_read_timeout).
        pub fn set_write_timeout(&self, d: Option<Duration>) -> io::Result<()> {
            self.io.set_timeout(Mode::Write, d)
        }

        /// The read timeout.
        pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
            Ok(self.io.timeout(Mode::Read))
        }

        /// The write timeout.
        pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
            Ok(self.io.timeout(Mode::Write))
        }
    };
}

/// `Read`/`Write` for a stream type and its shared reference, all through
/// its `PollIo` (field `io`): try the operation, park on would-block. With
/// `read_with = m`, reads go through the type's own `m(&self, bufs)`.
macro_rules! stream_io {
    ($t:ty) => {
        impl Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.io.io(Mode::Read, |mut s| s.read(buf))
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                self.io.io(Mode::Read, |mut s| s.read_vectored(bufs))
            }
        }
        stream_io!(@rest $t);
    };
    ($t:ty, read_with = $m:ident) => {
        impl Read for &$t {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                self.$m(&mut [IoSliceMut::new(buf)])
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                self.$m(bufs)
            }
        }
        stream_io!(@rest $t);
    };
    (@rest $t:ty) => {
        impl Write for &$t {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.io.io(Mode::Write, |mut s| s.write(buf))
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                self.io.io(Mode::Write, |mut s| s.write_vectored(bufs))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl Read for $t {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                (&*self).read(buf)
            }
            fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
                (&*self).read_vectored(bufs)
            }
        }

        impl Write for $t {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                (&*self).write(buf)
            }
            fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
                (&*self).write_vectored(bufs)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
    };
}

mod tcp;
mod udp;
mod unix;

pub use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs,
};
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{UnixDatagram, UnixIncoming, UnixListener, UnixStream};

/// A socket's registration with a runtime's netpoller.
struct Reg {
    pd: Arc<PollDesc>,
    sched: Weak<Sched>,
}

/// A FIFO lock that parks contenders (goroutines through `gopark`, plain
/// threads on their parker): Go's `fdMutex` read or write half.
///
/// The uncontended lock and unlock are one CAS each on `state` (a socket
/// is nearly always used by one goroutine per direction); the queue and
/// its mutex are touched only when someone has to wait.
struct OpLock {
    /// `FREE`, `HELD`, or `HELD_QUEUED`. Moves to `HELD_QUEUED` only under
    /// `q`'s mutex, by a locker that then queues itself before unlocking it.
    state: AtomicU8,
    q: Mutex<VecDeque<Waiter>>,
}

/// Nobody holds the lock.
const FREE: u8 = 0;
/// Held, nobody queued: the holder unlocks with one CAS.
const HELD: u8 = 1;
/// Held, and some waiter is (or is about to be, under `q`'s mutex) queued:
/// the holder hands the lock to the first one.
const HELD_QUEUED: u8 = 2;

pub(crate) struct OpGuard<'a>(&'a OpLock);

impl OpLock {
    fn new() -> OpLock {
        OpLock {
            state: AtomicU8::new(FREE),
            q: Mutex::new(VecDeque::new()),
        }
    }

    fn lock(&self) -> OpGuard<'_> {
        // Acquire: pairs with the Release in `unlock`, ordering the previous
        // holder's operation (and its read hint) before ours.
        if self
            .state
            .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return OpGuard(self);
        }
        self.lock_slow()
    }

    #[cold]
    fn lock_slow(&self) -> OpGuard<'_> {
        let mut q = self.q.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match self.state.load(Ordering::Relaxed) {
                FREE => {
                    if self
                        .state
                        .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                    {
                        return OpGuard(self);
                    }
                }
                HELD => {
                    // Announce a waiter, so the holder's unlock comes to the
                    // queue (it needs `q`'s mutex, which we hold until we are
                    // queued).
                    let _ = self.state.compare_exchange(
                        HELD,
                        HELD_QUEUED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                }
                _ => break,
            }
        }
        q.push_back(Waiter::current());
        // The unlocker hands the lock over (`state` stays held) and wakes us;
        // the Acquire is the queue mutex's, taken by the unlocker after our
        // push and released before its wake.
        park(WaitReason::IoWait, move || drop(q));
        OpGuard(self)
    }

    fn unlock(&self) {
        // Release: pairs with the Acquire in `lock`.
        if self
            .state
            .compare_exchange(HELD, FREE, Ordering::Release, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        self.unlock_slow();
    }

    #[cold]
    fn unlock_slow(&self) {
        let mut q = self.q.lock().unwrap_or_else(PoisonError::into_inner);
        // HELD_QUEUED was set under this mutex by a locker that queued itself
        // before releasing it, so the queue is not empty.
        match q.pop_front() {
            Some(w) => {
                if q.is_empty() {
                    // Handed over with nobody behind: back to the fast path.
                    self.state.store(HELD, Ordering::Relaxed);
                }
                drop(q);
                w.wake();
            }
            None => self.state.store(FREE, Ordering::Release),
        }
    }
}

impl Drop for OpGuard<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

/// Nanoseconds of a timeout (`0`: none).
fn timeout_ns(d: Option<Duration>) -> io::Result<u64> {
    match d {
        None => Ok(0),
        Some(d) if d.is_zero() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "cannot set a 0 duration timeout",
        )),
        Some(d) => Ok(d.as_nanos().clamp(1, u64::MAX as u128) as u64),
    }
}

fn ns_timeout(ns: u64) -> Option<Duration> {
    (ns != 0).then(|| Duration::from_nanos(ns))
}

pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "operation timed out")
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "use of closed network connection",
    )
}

/// Resolves addresses; the resolver may block in the OS, so it runs inside
/// [`crate::blocking`].
pub(crate) fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
    gmp_sched::blocking(|| addr.to_socket_addrs().map(|it| it.collect::<Vec<_>>()))
}

/// Tries `f` on each address in turn (std's `each_addr`).
pub(crate) fn each_addr<A: ToSocketAddrs, T>(
    addr: A,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let addrs = resolve(addr)?;
    let mut last = None;
    for a in &addrs {
        match f(a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "could not resolve to any addresses",
        )
    }))
}

/// A non-blocking socket plus its netpoll registration: the engine under
/// every type of this module (Go's `poll.FD`).
pub(crate) struct PollIo<S: AsFd> {
    sock: Option<S>,
    reg: OnceLock<Reg>,
    reg_lock: Mutex<()>,
    rlock: OpLock,
    wlock: OpLock,
    rtimeout: AtomicU64,
    wtimeout: AtomicU64,
}

impl<S: AsFd> PollIo<S> {
    /// Wraps a socket that is already non-blocking, registering it if the
    /// caller runs inside a runtime.
    pub(crate) fn new(sock: S) -> PollIo<S> {
        let io = PollIo {
            sock: Some(sock),
            reg: OnceLock::new(),
            reg_lock: Mutex::new(()),
            rlock: OpLock::new(),
            wlock: OpLock::new(),
            rtimeout: AtomicU64::new(0),
            wtimeout: AtomicU64::new(0),
        };
        let _ = io.reg();
        io
    }

    /// Whether the socket is registered with a netpoller (so a wait is an
    /// edge-triggered park, not `poll(2)`).
    pub(crate) fn registered(&self) -> bool {
        self.reg.get().is_some()
    }

    pub(crate) fn sock(&self) -> &S {
        self.sock
            .as_ref()
            .expect("gmp::net: socket present until drop")
    }

    /// After a `connect` completed: tell the netpoller, which keeps the
    /// two ends of a loopback connection on one shard (see
    /// `gmp_sched::netpoll::Netpoll::pair`).
    pub(crate) fn connected(&self) {
        if let Some(r) = self.reg.get() {
            if let Some(s) = r.sched.upgrade() {
                s.netpoller().pair(&r.pd, self.sock().as_fd());
            }
        }
    }

    /// The registration, made on first use inside a runtime. `None` outside
    /// any runtime, or if epoll refused the descriptor.
    fn reg(&self) -> Option<&Reg> {
        if let Some(r) = self.reg.get() {
            return Some(r);
        }
        let s = gmp_sched::current_sched()?;
        let _g = self.reg_lock.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = self.reg.get() {
            return Some(r);
        }
        match s.netpoller().register(self.sock().as_fd()) {
            Ok(pd) => {
                let _ = self.reg.set(Reg {
                    pd,
                    sched: Arc::downgrade(&s),
                });
                self.reg.get()
            }
            Err(e) => {
                tracing::debug!("gmp::net: epoll registration failed ({e}); using poll(2)");
                None
            }
        }
    }

    pub(crate) fn set_timeout(&self, mode: Mode, d: Option<Duration>) -> io::Result<()> {
        let ns = timeout_ns(d)?;
        match mode {
            Mode::Read => self.rtimeout.store(ns, Ordering::Relaxed),
            Mode::Write => self.wtimeout.store(ns, Ordering::Relaxed),
        }
        Ok(())
    }

    pub(crate) fn timeout(&self, mode: Mode) -> Option<Duration> {
        ns_timeout(match mode {
            Mode::Read => self.rtimeout.load(Ordering::Relaxed),
            Mode::Write => self.wtimeout.load(Ordering::Relaxed),
        })
    }

    /// Runs `f` until it does not return `WouldBlock`, parking on the
    /// netpoller in between, under the direction's lock and its timeout.
    pub(crate) fn io<R>(&self, mode: Mode, f: impl FnMut(&S) -> io::Result<R>) -> io::Result<R> {
        let _g = self.lock(mode);
        self.io_locked(mode, self.timeout(mode), false, f)
    }

    /// Takes the direction's lock (Go's `fd.readLock` / `fd.writeLock`).
    pub(crate) fn lock(&self, mode: Mode) -> OpGuard<'_> {
        match mode {
            Mode::Read => self.rlock.lock(),
            Mode::Write => self.wlock.lock(),
        }
    }

    /// Like [`io`](Self::io) with an explicit timeout and without taking
    /// the direction's lock (the caller holds it or is the only user).
    /// With `wait_first` the caller knows `f` would say `WouldBlock` (the
    /// receive queue was drained and the descriptor is registered, see
    /// `gmp_sched::netpoll::recv_inq`): it waits for readiness before the
    /// first try instead of paying a failing syscall.
    pub(crate) fn io_locked<R>(
        &self,
        mode: Mode,
        timeout: Option<Duration>,
        mut wait_first: bool,
        mut f: impl FnMut(&S) -> io::Result<R>,
    ) -> io::Result<R> {
        gmp_sched::check_preempt();
        let mut deadline: Option<Instant> = None;
        let mut armed: Option<&Reg> = None;
        let r = loop {
            if !std::mem::take(&mut wait_first) {
                match f(self.sock()) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            }
            // Without a timeout to arm, a goroutine of the socket's own
            // runtime waits without touching the runtime's reference count.
            if timeout.is_none() {
                if let Some(r) = self.reg().and_then(|reg| reg.pd.wait_here(mode)) {
                    match r {
                        Ok(()) => continue,
                        Err(WaitError::TimedOut) => break Err(timed_out()),
                        Err(WaitError::Closed) => break Err(closed()),
                    }
                }
            }
            // (A socket whose runtime is gone waits like a plain thread.)
            match self.reg().and_then(|r| Some((r, r.sched.upgrade()?))) {
                Some((reg, s)) => {
                    if armed.is_none() {
                        if let Some(t) = timeout {
                            reg.pd.set_deadline(&s, mode, Some(t));
                            armed = Some(reg);
                        }
                    }
                    match s.netpoller().wait(&reg.pd, mode) {
                        Ok(()) => {}
                        Err(WaitError::TimedOut) => break Err(timed_out()),
                        Err(WaitError::Closed) => break Err(closed()),
                    }
                }
                None => {
                    // Computed once, at the first wait without the poller.
                    let deadline = *deadline.get_or_insert_with(|| match timeout {
                        Some(t) => Instant::now().checked_add(t).unwrap_or_else(far_future),
                        None => far_future(),
                    });
                    if !poll_fd(self.sock().as_fd(), mode, deadline)? {
                        break Err(timed_out());
                    }
                }
            }
        };
        if let Some(reg) = armed {
            if let Some(s) = reg.sched.upgrade() {
                reg.pd.set_deadline(&s, mode, None);
            }
        }
        r
    }

    /// Deregisters and returns the socket (for `into_std`).
    pub(crate) fn into_inner(mut self) -> S {
        self.deregister();
        self.sock
            .take()
            .expect("gmp::net: socket present until drop")
    }

    fn deregister(&mut self) {
        if let (Some(reg), Some(sock)) = (self.reg.take(), self.sock.as_ref()) {
            if let Some(s) = reg.sched.upgrade() {
                s.netpoller().deregister(&reg.pd, sock.as_fd());
            }
        }
    }
}

impl<S: AsFd> Drop for PollIo<S> {
    fn drop(&mut self) {
        // Before the descriptor closes (the field drops after this).
        self.deregister();
    }
}

impl<S: AsFd> std::fmt::Debug for PollIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.sock {
            Some(s) => write!(f, "fd {}", s.as_fd().as_raw_fd()),
            None => write!(f, "closed"),
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365 * 30)
}

/// Waits in `poll(2)` (inside [`crate::blocking`]) until `fd` is ready or
/// `deadline` passes; false on timeout.
fn poll_fd(fd: std::os::fd::BorrowedFd<'_>, mode: Mode, deadline: Instant) -> io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout};
    let flags = match mode {
        Mode::Read => PollFlags::POLLIN,
        Mode::Write => PollFlags::POLLOUT,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        // Whole milliseconds, rounded up, at most ~24 days per call.
        let ms = left.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        let timeout = PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(fd, flags)];
        match gmp_sched::blocking(|| nix::poll::poll(&mut fds, timeout)) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}
