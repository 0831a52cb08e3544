//! TCP_NODELAY on the worker's Postgres connections, which sqlx leaves off. With Nagle on,
//! the small CopyDone that ends a COPY waits for the server's delayed ACK of the data before
//! it (about 40 ms a batch on Linux); with it off, the sink can COPY its rows. sqlx does not
//! expose its sockets, so the socket is found as the kernel lists it: the connection's local
//! port (`inet_client_port()` on the server's side) in `/proc/net/tcp{,6}`, its inode among
//! `/proc/self/fd`, and the option set on that descriptor. (A duplicate taken through a pidfd
//! would need no unsafe borrow, but container runtimes' default seccomp profiles refuse
//! `pidfd_getfd`: seen on the real node.)

use std::fs;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cleared for good once a connection could not be given TCP_NODELAY (e.g. behind a NAT
/// that rewrites its port): the sink then keeps to the prepared INSERT.
static ALL_CONNECTIONS: AtomicBool = AtomicBool::new(true);

/// Whether every Postgres connection opened so far has TCP_NODELAY.
pub fn on_every_connection() -> bool {
    ALL_CONNECTIONS.load(Ordering::Relaxed)
}

/// Record that a connection could not be given TCP_NODELAY.
pub fn missing_on_a_connection() {
    ALL_CONNECTIONS.store(false, Ordering::Relaxed);
}

/// Set TCP_NODELAY on this process's established TCP socket with local port `port`.
pub fn set_for_local_port(port: u16) -> io::Result<()> {
    let inodes = socket_inodes(port);
    if inodes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no established socket with local port {port}"),
        ));
    }
    let fds = descriptors_of(&inodes)?;
    if fds.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no descriptor of this process holds the socket of local port {port}"),
        ));
    }
    for fd in fds {
        set_nodelay(fd)?;
    }
    Ok(())
}

/// The one borrow of a descriptor by number in the workspace.
#[allow(unsafe_code)]
fn set_nodelay(fd: i32) -> io::Result<()> {
    // SAFETY: `fd` was listed in /proc/self/fd a moment ago as the socket of a Postgres
    // connection that sqlx is setting up in this very call (its after_connect hook), so
    // nothing closes it while it is borrowed here. The test below borrows a socket it owns.
    let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    rustix::net::sockopt::set_tcp_nodelay(socket, true)?;
    Ok(())
}

/// Descriptor numbers of this process that refer to the sockets `inodes`.
fn descriptors_of(inodes: &[String]) -> io::Result<Vec<i32>> {
    let mut fds = Vec::new();
    for entry in fs::read_dir("/proc/self/fd")? {
        let entry = entry?;
        let Ok(target) = fs::read_link(entry.path()) else {
            continue; // closed meanwhile
        };
        let target = target.to_string_lossy();
        let inode = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'));
        if inode.is_some_and(|i| inodes.iter().any(|x| x == i))
            && let Ok(fd) = entry.file_name().to_string_lossy().parse()
        {
            fds.push(fd);
        }
    }
    Ok(fds)
}

/// Inodes of established sockets with local port `port`, from `/proc/net/tcp` and `tcp6`.
fn socket_inodes(port: u16) -> Vec<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| established_with_local_port(&text, port))
        .collect()
}

/// Rows of a `/proc/net/tcp` table: `sl local_address rem_address st … inode`, addresses as
/// hex `ADDR:PORT`, state `01` for established.
fn established_with_local_port(table: &str, port: u16) -> Vec<String> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields.get(1)?.rsplit(':').next()?;
            let established = *fields.get(3)? == "01";
            (established && u16::from_str_radix(local_port, 16).ok()? == port)
                .then(|| fields.get(9).map(|i| i.to_string()))
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_established_socket_of_a_local_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9E4B 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 4242 1 0
   1: 0100007F:9E4B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0
   2: 0100007F:1F90 0100007F:9E4B 01 00000000:00000000 00:00000000 00000000     0        0 4444 1 0";
        assert_eq!(established_with_local_port(table, 0x9E4B), ["4242"]);
        assert!(established_with_local_port(table, 1).is_empty());
    }

    #[test]
    fn sets_nodelay_on_a_real_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let _server = listener.accept().unwrap();
        assert!(!client.nodelay().unwrap());
        set_for_local_port(client.local_addr().unwrap().port()).unwrap();
        assert!(client.nodelay().unwrap());
    }
}
