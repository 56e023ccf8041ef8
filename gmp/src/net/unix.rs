//! Unix domain sockets: [`UnixListener`], [`UnixStream`], [`UnixDatagram`]
//! on the netpoller (`std::os::unix::net` mirrored).

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::net::{self as unet, SocketAddr};
use std::path::Path;
use std::time::Duration;

use gmp_sched::netpoll::Mode;
use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};

use super::PollIo;

fn unix_socket(ty: SockType) -> io::Result<OwnedFd> {
    Ok(socket::socket(
        AddressFamily::Unix,
        ty,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

fn unix_addr(path: &Path) -> io::Result<UnixAddr> {
    Ok(UnixAddr::new(path)?)
}

/// A Unix stream socket server (`std::os::unix::net::UnixListener` on the
/// netpoller).
pub struct UnixListener {
    io: PollIo<unet::UnixListener>,
}

/// An endless iterator over a Unix listener's connections.
#[derive(Debug)]
pub struct UnixIncoming<'a> {
    listener: &'a UnixListener,
}

impl UnixListener {
    /// Creates a listener bound to the filesystem path `path` (backlog:
    /// `SOMAXCONN`).
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let fd = unix_socket(SockType::Stream)?;
        socket::bind(fd.as_raw_fd(), &unix_addr(path.as_ref())?)?;
        socket::listen(&fd, Backlog::MAXCONN)?;
        Ok(UnixListener {
            io: PollIo::new(unet::UnixListener::from(fd)),
        })
    }

    /// Accepts a connection, parking until one arrives.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, a) = self.io.io(Mode::Read, |l| l.accept())?;
        s.set_nonblocking(true)?;
        Ok((UnixStream { io: PollIo::new(s) }, a))
    }

    /// An endless iterator over accepted connections.
    pub fn incoming(&self) -> UnixIncoming<'_> {
        UnixIncoming { listener: self }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.sock().local_addr()
    }

    /// Reads and clears `SO_ERROR`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.sock().take_error()
    }

    /// A second handle on the same socket (a `dup`), registered on its own.
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener {
            io: PollIo::new(self.io.sock().try_clone()?),
        })
    }

    /// Deregisters the listener and returns it in blocking mode.
    pub fn into_std(self) -> io::Result<unet::UnixListener> {
        let l = self.io.into_inner();
        l.set_nonblocking(false)?;
        Ok(l)
    }
}

impl From<unet::UnixListener> for UnixListener {
    /// Sets the listener non-blocking and registers it.
    fn from(l: unet::UnixListener) -> UnixListener {
        // Fails only for a descriptor that is not a socket at all.
        let _ = l.set_nonblocking(true);
        UnixListener { io: PollIo::new(l) }
    }
}

impl<'a> Iterator for UnixIncoming<'a> {
    type Item = io::Result<UnixStream>;
    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl AsFd for UnixListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.sock().as_fd()
    }
}

impl AsRawFd for UnixListener {
    fn as_raw_fd(&self) -> RawFd {
        self.io.sock().as_raw_fd()
    }
}

/// A Unix stream connection (`std::os::unix::net::UnixStream` on the
/// netpoller).
pub struct UnixStream {
    io: PollIo<unet::UnixStream>,
}

impl UnixStream {
    /// Connects to the socket at `path`. A full backlog (`EAGAIN`, which a
    /// non-blocking Unix connect reports instead of waiting) is retried
    /// after a short sleep, so this behaves like std's blocking connect.
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let addr = unix_addr(path.as_ref())?;
        let fd = unix_socket(SockType::Stream)?;
        let mut backoff = Duration::from_micros(100);
        loop {
            match socket::connect(fd.as_raw_fd(), &addr) {
                Ok(()) => break,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    crate::time::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(10));
                }
                Err(Errno::EINPROGRESS) => {
                    let s = UnixStream {
                        io: PollIo::new(unet::UnixStream::from(fd)),
                    };
                    s.io.io_locked(Mode::Write, None, false, |sock| {
                        match socket::getsockopt(sock, socket::sockopt::SocketError)? {
                            0 => Ok(()),
                            e => Err(io::Error::from_raw_os_error(e)),
                        }
                    })?;
                    return Ok(s);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(UnixStream {
            io: PollIo::new(unet::UnixStream::from(fd)),
        })
    }

    /// A connected pair of anonymous sockets.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = unet::UnixStream::pair()?;
        Ok((UnixStream::from(a), UnixStream::from(b)))
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.sock().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.sock().local_addr()
    }

    /// Shuts down the read half, the write half, or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.sock().shutdown(how)
    }

    io_timeouts!();

    /// Reads and clears `SO_ERROR`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.sock().take_error()
    }

    /// A second handle on the same connection (a `dup`).
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        Ok(UnixStream {
            io: PollIo::new(self.io.sock().try_clone()?),
        })
    }

    /// Deregisters the stream and returns it in blocking mode.
    pub fn into_std(self) -> io::Result<unet::UnixStream> {
        let s = self.io.into_inner();
        s.set_nonblocking(false)?;
        Ok(s)
    }
}

impl From<unet::UnixStream> for UnixStream {
    /// Sets the stream non-blocking and registers it.
    fn from(s: unet::UnixStream) -> UnixStream {
        // Fails only for a descriptor that is not a socket at all.
        let _ = s.set_nonblocking(true);
        UnixStream { io: PollIo::new(s) }
    }
}

stream_io!(UnixStream);

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl AsFd for UnixStream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.sock().as_fd()
    }
}

impl AsRawFd for UnixStream {
    fn as_raw_fd(&self) -> RawFd {
        self.io.sock().as_raw_fd()
    }
}

/// A Unix datagram socket (`std::os::unix::net::UnixDatagram` on the
/// netpoller).
pub struct UnixDatagram {
    io: PollIo<unet::UnixDatagram>,
}

impl UnixDatagram {
    /// A socket bound to the filesystem path `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        let fd = unix_socket(SockType::Datagram)?;
        socket::bind(fd.as_raw_fd(), &unix_addr(path.as_ref())?)?;
        Ok(UnixDatagram {
            io: PollIo::new(unet::UnixDatagram::from(fd)),
        })
    }

    /// A socket bound to no address.
    pub fn unbound() -> io::Result<UnixDatagram> {
        let fd = unix_socket(SockType::Datagram)?;
        Ok(UnixDatagram {
            io: PollIo::new(unet::UnixDatagram::from(fd)),
        })
    }

    /// A connected pair of anonymous sockets.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = unet::UnixDatagram::pair()?;
        Ok((UnixDatagram::from(a), UnixDatagram::from(b)))
    }

    /// Sets the default peer.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.io.sock().connect(path)
    }

    /// Sends one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.io(Mode::Write, |s| s.send(buf))
    }

    /// Receives one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.io(Mode::Read, |s| s.recv(buf))
    }

    /// Sends one datagram to `path`.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.io.io(Mode::Write, |s| s.send_to(buf, path))
    }

    /// Receives one datagram and its sender.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io.io(Mode::Read, |s| s.recv_from(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.sock().local_addr()
    }

    /// The connected peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.sock().peer_addr()
    }

    /// Shuts down the read half, the write half, or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.io.sock().shutdown(how)
    }

    io_timeouts!();

    /// Reads and clears `SO_ERROR`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.sock().take_error()
    }

    /// Deregisters the socket and returns it in blocking mode.
    pub fn into_std(self) -> io::Result<unet::UnixDatagram> {
        let s = self.io.into_inner();
        s.set_nonblocking(false)?;
        Ok(s)
    }
}

impl From<unet::UnixDatagram> for UnixDatagram {
    /// Sets the socket non-blocking and registers it.
    fn from(s: unet::UnixDatagram) -> UnixDatagram {
        // Fails only for a descriptor that is not a socket at all.
        let _ = s.set_nonblocking(true);
        UnixDatagram { io: PollIo::new(s) }
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram")
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

impl AsFd for UnixDatagram {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.sock().as_fd()
    }
}

impl AsRawFd for UnixDatagram {
    fn as_raw_fd(&self) -> RawFd {
        self.io.sock().as_raw_fd()
    }
}
