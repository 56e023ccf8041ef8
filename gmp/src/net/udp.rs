//! UDP: [`UdpSocket`] on the netpoller.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use gmp_sched::netpoll::Mode;
use nix::sys::socket::{self, SockType, SockaddrStorage};

use super::tcp::new_socket;
use super::{each_addr, resolve, PollIo};

/// A UDP socket (`std::net::UdpSocket` on the netpoller): receives and
/// sends that would block park the goroutine.
pub struct UdpSocket {
    io: PollIo<std::net::UdpSocket>,
}

impl UdpSocket {
    /// Creates a socket bound to `addr` (each resolved address in turn).
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        each_addr(addr, |a| {
            let fd = new_socket(a, SockType::Datagram)?;
            socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(*a))?;
            Ok(UdpSocket {
                io: PollIo::new(std::net::UdpSocket::from(fd)),
            })
        })
    }

    /// Receives one datagram and its sender, parking until one arrives.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io.io(Mode::Read, |s| s.recv_from(buf))
    }

    /// Like [`recv_from`](Self::recv_from) without consuming the datagram.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io.io(Mode::Read, |s| s.peek_from(buf))
    }

    /// Sends one datagram to `addr` (its first resolved address).
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let to = resolve(addr)?.into_iter().next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to")
        })?;
        self.io.io(Mode::Write, |s| s.send_to(buf, to))
    }

    /// Sets the default peer (each resolved address in turn) for
    /// [`send`](Self::send) and filters [`recv`](Self::recv) to it.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(addr, |a| self.io.sock().connect(a))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.io(Mode::Write, |s| s.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.io(Mode::Read, |s| s.recv(buf))
    }

    /// Like [`recv`](Self::recv) without consuming the datagram.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io.io(Mode::Read, |s| s.peek(buf))
    }

    /// The connected peer.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.sock().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.sock().local_addr()
    }

    io_timeouts!();

    /// Sets `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.io.sock().set_broadcast(on)
    }

    /// Reads `SO_BROADCAST`.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.io.sock().broadcast()
    }

    /// Sets `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.io.sock().set_ttl(ttl)
    }

    /// Reads `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.io.sock().ttl()
    }

    /// Joins an IPv4 multicast group.
    pub fn join_multicast_v4(&self, group: &Ipv4Addr, iface: &Ipv4Addr) -> io::Result<()> {
        self.io.sock().join_multicast_v4(group, iface)
    }

    /// Leaves an IPv4 multicast group.
    pub fn leave_multicast_v4(&self, group: &Ipv4Addr, iface: &Ipv4Addr) -> io::Result<()> {
        self.io.sock().leave_multicast_v4(group, iface)
    }

    /// Joins an IPv6 multicast group.
    pub fn join_multicast_v6(&self, group: &Ipv6Addr, iface: u32) -> io::Result<()> {
        self.io.sock().join_multicast_v6(group, iface)
    }

    /// Leaves an IPv6 multicast group.
    pub fn leave_multicast_v6(&self, group: &Ipv6Addr, iface: u32) -> io::Result<()> {
        self.io.sock().leave_multicast_v6(group, iface)
    }

    /// Reads and clears `SO_ERROR`.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.io.sock().take_error()
    }

    /// A second handle on the same socket (a `dup`), registered on its own.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            io: PollIo::new(self.io.sock().try_clone()?),
        })
    }

    /// Deregisters the socket and returns it as a blocking std socket.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        let s = self.io.into_inner();
        s.set_nonblocking(false)?;
        Ok(s)
    }
}

impl From<std::net::UdpSocket> for UdpSocket {
    /// Sets the socket non-blocking and registers it.
    fn from(s: std::net::UdpSocket) -> UdpSocket {
        // Fails only for a descriptor that is not a socket at all.
        let _ = s.set_nonblocking(true);
        UdpSocket { io: PollIo::new(s) }
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("UdpSocket");
        if let Ok(a) = self.local_addr() {
            d.field("addr", &a);
        }
        d.field("fd", &self.as_raw_fd()).finish()
    }
}

impl AsFd for UdpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.io.sock().as_fd()
    }
}

impl AsRawFd for UdpSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.io.sock().as_raw_fd()
    }
}
