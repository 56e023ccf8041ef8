//! TCP: [`TcpListener`] and [`TcpStream`] on the netpoller.

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use gmp_sched::netpoll::{enable_tcp_inq, recv_inq, Mode};
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, SockaddrStorage};

use super::{each_addr, PollIo};

/// A non-blocking stream socket for `addr`'s family.
pub(crate) fn new_socket(addr: &SocketAddr, ty: SockType) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    Ok(socket::socket(
        family,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// A TCP socket server, listening for connections (`std::net::TcpListener`
/// on the netpoller): `accept` parks the goroutine until a client arrives.
pub struct TcpListener {
    io: PollIo<std::net::TcpListener>,
}

/// An endless iterator over a listener's connections (`incoming`).
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl TcpListener {
    /// Creates a listener bound to `addr` (each resolved address is tried in
    /// turn). Like std it sets `SO_REUSEADDR`; the backlog is the system's
    /// maximum (`SOMAXCONN`), as in Go.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        each_addr(addr, |a| {
            let fd = new_socket(a, SockType::Stream)?;
            socket::setsockopt(&fd, socket::sockopt::ReuseAddr, &true)?;
            socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(*a))?;
            socket::listen(&fd, Backlog::MAXCONN)?;
            Ok(TcpListener {
                io: PollIo::new(std::net::TcpListener::from(fd)),
            })
        })
    }

    /// Accepts a connection, parking until one arrives. Errors (`EMFILE`,
    /// `ECONNABORTED`, ...) are returned as they are; the listener stays
    /// usable.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, a) = self.io.io(Mode::Read, |l| l.accept())?;
        Ok((TcpStream::from_accepted(s)?, a))
    }

    /// An endless iterator over accepted connections.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.sock().local_addr()
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.sock().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.sock().ttl()
    }

    /// Reads and clears `SO_ERROR`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.sock().take_error()
    }

    /// A second handle on the same socket (a `dup`), registered on its own.
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener {
            io: PollIo::new(self.io.sock().try_clone()?),
        })
    }

    /// Deregisters the listener and returns it as a blocking std listener.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        let l = self.io.into_inner();
        l.set_nonblocking(false)?;
        Ok(l)
    }
}

impl From<std::net::TcpListener> for TcpListener {
    /// Sets the listener non-blocking and registers it (with the current
    /// runtime, or on first use inside one).
    fn from(l: std::net::TcpListener) -> TcpListener {
        // Fails only for a descriptor that is not a socket at all.
        let _ = l.set_nonblocking(true);
        TcpListener { io: PollIo::new(l) }
    }
}

impl<'a> Iterator for Incoming<'a> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpListener");
        if let Ok(a) = self.local_addr() {
            d.field("addr", &a);
        }
        d.field("fd", &self.as_raw_fd()).finish()
    }
}

impl AsFd for TcpListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.sock().as_fd()
    }
}

impl AsRawFd for TcpListener {
    fn as_raw_fd(&self) -> RawFd {
        self.io.sock().as_raw_fd()
    }
}

/// A TCP connection (`std::net::TcpStream` on the netpoller): reads and
/// writes that would block park the goroutine.
pub struct TcpStream {
    io: PollIo<std::net::TcpStream>,
    rhint: ReadHint,
}

/// `TCP_INQ` not asked for yet.
const INQ_UNASKED: u8 = 0;
/// `TCP_INQ` is on: reads use `recv_inq`.
const INQ_ON: u8 = 1;
/// The kernel refused `TCP_INQ`: plain reads.
const INQ_OFF: u8 = 2;

/// What the last read learnt about the receive queue. Touched only under
/// the read lock (which orders it between readers), hence `Relaxed`.
struct ReadHint {
    /// `INQ_UNASKED`, `INQ_ON` or `INQ_OFF`. Asked for at the first read
    /// that would block, so a connection that never waits for data never
    /// pays the `setsockopt`.
    inq: AtomicU8,
    /// The last read emptied the receive queue (the kernel said so through
    /// `TCP_INQ`): the next read waits for readiness before trying.
    drained: AtomicBool,
}

impl ReadHint {
    fn new() -> ReadHint {
        ReadHint {
            inq: AtomicU8::new(INQ_UNASKED),
            drained: AtomicBool::new(false),
        }
    }
}

impl TcpStream {
    fn new(s: std::net::TcpStream) -> TcpStream {
        TcpStream {
            io: PollIo::new(s),
            rhint: ReadHint::new(),
        }
    }

    fn from_accepted(s: std::net::TcpStream) -> io::Result<TcpStream> {
        s.set_nonblocking(true)?;
        Ok(TcpStream::new(s))
    }

    /// Every read: under the read lock, try (or, if the last read drained
    /// the queue, first wait for an edge), park on would-block.
    ///
    /// A request/response peer reads right after writing, before the answer
    /// can exist; Go's try-first then costs a failing `recvfrom` per message.
    /// Once `TCP_INQ` says a read left the queue empty, the next read parks
    /// at once: any byte arriving after that read fires a new epoll edge
    /// (see `gmp_sched::netpoll::recv_inq`), so nothing is missed.
    fn read_bufs(&self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        // A zero-length read returns at once, as in Go's `fd.Read` (the
        // kernel would say EAGAIN on an empty queue and park us for data).
        if bufs.iter().all(|b| b.is_empty()) {
            return Ok(0);
        }
        let _g = self.io.lock(Mode::Read);
        let h = &self.rhint;
        let wait_first = h.drained.swap(false, Ordering::Relaxed) && self.io.registered();
        self.io
            .io_locked(Mode::Read, self.io.timeout(Mode::Read), wait_first, |s| {
                if h.inq.load(Ordering::Relaxed) == INQ_ON {
                    let (n, drained) = recv_inq(s.as_fd(), bufs)?;
                    h.drained.store(drained, Ordering::Relaxed);
                    return Ok(n);
                }
                let r = match bufs {
                    [one] => (&*s).read(one),
                    _ => (&*s).read_vectored(bufs),
                };
                if let Err(e) = &r {
                    if e.kind() == io::ErrorKind::WouldBlock
                        && h.inq.load(Ordering::Relaxed) == INQ_UNASKED
                    {
                        let on = enable_tcp_inq(s.as_fd()).is_ok();
                        h.inq
                            .store(if on { INQ_ON } else { INQ_OFF }, Ordering::Relaxed);
                    }
                }
                r
            })
    }

    /// Opens a connection to `addr` (each resolved address in turn),
    /// parking until the handshake completes. A refused connection is
    /// `ErrorKind::ConnectionRefused`.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(addr, |a| TcpStream::connect_addr(a, None))
    }

    /// Like [`connect`](Self::connect) with a bound on the handshake
    /// (`ErrorKind::TimedOut` past it). A zero timeout is an error, as in std.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot set a 0 duration timeout",
            ));
        }
        TcpStream::connect_addr(addr, Some(timeout))
    }

    fn connect_addr(addr: &SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        let fd = new_socket(addr, SockType::Stream)?;
        let s = TcpStream::new(std::net::TcpStream::from(fd));
        match socket::connect(s.as_raw_fd(), &SockaddrStorage::from(*addr)) {
            Ok(()) => return Ok(s),
            // Go's connect: the handshake goes on; wait for writability.
            Err(Errno::EINPROGRESS | Errno::EALREADY | Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        s.io.io_locked(Mode::Write, timeout, false, |sock| {
            match socket::getsockopt(sock, socket::sockopt::SocketError)? {
                0 => {}
                e if e == Errno::EINPROGRESS as i32 || e == Errno::EALREADY as i32 => {
                    return Err(io::ErrorKind::WouldBlock.into())
                }
                e => return Err(io::Error::from_raw_os_error(e)),
            }
            // Connected iff it has a peer (a spurious wake-up has none yet).
            match sock.peer_addr() {
                Ok(_) => Ok(()),
                Err(e) if e.raw_os_error() == Some(Errno::ENOTCONN as i32) => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Err(e) => Err(e),
            }
        })?;
        s.io.connected();
        Ok(s)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.sock().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.sock().local_addr()
    }

    /// Shuts down the read half, the write half, or both. A goroutine
    /// parked in `read` sees end-of-file.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.sock().shutdown(how)
    }

    io_timeouts!();

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.io.sock().set_nodelay(on)
    }

    /// Reads `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.sock().nodelay()
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.sock().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.sock().ttl()
    }

    /// Reads and clears `SO_ERROR`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.sock().take_error()
    }

    /// Reads without consuming, parking until data (or end-of-file) arrives.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.io(Mode::Read, |s| s.peek(buf))
    }

    /// A second handle on the same connection (a `dup`), registered on its
    /// own: one may read while the other writes, from any goroutine.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream::new(self.io.sock().try_clone()?))
    }

    /// Deregisters the stream and returns it as a blocking std stream.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        let s = self.io.into_inner();
        s.set_nonblocking(false)?;
        Ok(s)
    }
}

impl From<std::net::TcpStream> for TcpStream {
    /// Sets the stream non-blocking and registers it (with the current
    /// runtime, or on first use inside one).
    fn from(s: std::net::TcpStream) -> TcpStream {
        // Fails only for a descriptor that is not a socket at all.
        let _ = s.set_nonblocking(true);
        TcpStream::new(s)
    }
}

stream_io!(TcpStream, read_with = read_bufs);

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("TcpStream");
        if let Ok(a) = self.local_addr() {
            d.field("addr", &a);
        }
        if let Ok(a) = self.peer_addr() {
            d.field("peer", &a);
        }
        d.field("fd", &self.as_raw_fd()).finish()
    }
}

impl AsFd for TcpStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.sock().as_fd()
    }
}

impl AsRawFd for TcpStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.sock().as_raw_fd()
    }
}
