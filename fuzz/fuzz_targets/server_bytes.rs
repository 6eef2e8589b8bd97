//! An `npipe::Server` fed arbitrary bytes by a client, in process. The first input
//! byte picks the server: message mode (cap 4 KiB) or byte mode, both echoing.
//!
//! - Message mode: the reply stream must be exactly the complete, in-cap frames of
//!   the input (the echo of each request), then the connection closes; after an
//!   oversized length only a prefix of that may arrive (the server closes at once).
//! - Byte mode: the reply is the input, whole.
//! - Either way, the server never hangs (the client's read has a deadline) and keeps
//!   serving: a normal `call` succeeds after every input.

#![no_main]

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use npipe::{ConnectOptions, ListenerOptions, Mode, Response, Server, SpawnedServer};

const CAP: u32 = 4096;

struct Servers {
    message: SpawnedServer,
    byte: SpawnedServer,
}

fn servers() -> &'static Servers {
    static SERVERS: OnceLock<Servers> = OnceLock::new();
    SERVERS.get_or_init(|| {
        let pid = std::process::id();
        let spawn = |label: &str, mode: Mode| {
            let mut options = ListenerOptions::new();
            options
                .mode(mode)
                .max_message_size(CAP)
                .pending_instances(8);
            Server::builder(format!("fuzz{pid}-{label}"))
                .options(options)
                .idle_timeout(Some(Duration::from_secs(5)))
                .request_timeout(Some(Duration::from_secs(5)))
                .worker_threads(2)
                .handler(|request| Response::new(request.into_body()))
                .spawn()
                .expect("start the server")
        };
        Servers {
            message: spawn("msg", Mode::Message),
            byte: spawn("byte", Mode::Byte),
        }
    })
}

/// The bytes of the complete frames at the start of `wire`, and whether the input
/// stops at one (nothing after them but a cut-off frame).
fn complete_frames(wire: &[u8]) -> (&[u8], bool) {
    let mut at = 0;
    loop {
        let rest = &wire[at..];
        if rest.len() < 4 {
            return (&wire[..at], true);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        if len > CAP {
            return (&wire[..at], false);
        }
        if rest.len() < 4 + len as usize {
            return (&wire[..at], true);
        }
        at += 4 + len as usize;
    }
}

fn exchange(server: &SpawnedServer, input: &[u8]) -> Vec<u8> {
    let mut stream = ConnectOptions::new()
        .mode(Mode::Byte)
        .timeout(Duration::from_secs(10))
        .connect(server.name())
        .expect("connect");
    // The server may close early (oversized length): a failed write is expected.
    let _ = stream.write_all(input);
    let _ = stream.shutdown(Shutdown::Write);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if npipe::ErrorKind::of(&e) == npipe::ErrorKind::Timeout => {
                panic!("the server neither replied nor closed: {e}")
            }
            // A reset: the server closed with input unread.
            Err(_) => break,
        }
    }
    reply
}

fuzz_target!(|data: &[u8]| {
    let [which, input @ ..] = data else {
        return;
    };
    let servers = servers();
    if which & 1 == 0 {
        let reply = exchange(&servers.message, input);
        let (frames, exact) = complete_frames(input);
        if exact {
            assert_eq!(reply, frames, "the echo of every complete frame");
        } else {
            assert!(frames.starts_with(&reply), "a prefix of the echoed frames");
        }
    } else {
        let reply = exchange(&servers.byte, input);
        assert_eq!(reply, input, "byte mode echoes everything");
    }
    let check = npipe::call(
        servers.message.name(),
        b"still there?",
        Duration::from_secs(10),
    )
    .expect("the server keeps serving");
    assert_eq!(check, b"still there?");
});
