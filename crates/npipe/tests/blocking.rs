//! The blocking API across threads and processes.

use std::io::{Read, Write};
#[cfg(unix)]
use std::net::Shutdown;
use std::thread;
use std::time::Duration;

#[cfg(unix)]
use npipe::{Access, Mode};
use npipe::{ConnectOptions, Direction, ErrorKind, Listener, ListenerOptions, PipeName, Stream};

use crate::util::{self, kind, unique};

/// Serves exactly `n` connections, each in its own thread, answering every message
/// with `Response to: <message>`; then drops the listener (removing the pipe).
fn serve_n(listener: Listener, n: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut workers = Vec::new();
        for _ in 0..n {
            let mut stream = listener.accept().expect("accept");
            workers.push(thread::spawn(move || respond(&mut stream)));
        }
        drop(listener);
        for w in workers {
            w.join().expect("worker");
        }
    })
}

fn respond(stream: &mut Stream) {
    util::answer(stream, b"Response to: ");
}

fn request(stream: &mut Stream, message: &[u8]) -> Vec<u8> {
    stream.send(message).expect("send");
    let mut reply = Vec::new();
    assert!(stream.recv(&mut reply).expect("recv").is_some(), "no reply");
    reply
}

// ---------------------------------------------------------------------------------
// Message mode

#[test]
fn message_round_trip_between_threads() {
    let (_w, name) = util::begin("message_round_trip_between_threads");
    let server = serve_n(Listener::bind(&name).unwrap(), 1);
    let mut client = Stream::connect(&name).unwrap();
    for i in 0..100 {
        let msg = format!("request {i}");
        assert_eq!(
            request(&mut client, msg.as_bytes()),
            format!("Response to: {msg}").as_bytes()
        );
    }
    drop(client);
    server.join().unwrap();
}

#[test]
fn zero_length_and_large_messages_keep_their_boundaries() {
    let (_w, name) = util::begin("zero_length_and_large_messages");
    let listener = Listener::bind(&name).unwrap();
    let server = util::serve_one(listener, move |mut s| {
        let mut buf = Vec::new();
        let mut sizes = Vec::new();
        while let Some(n) = s.recv(&mut buf).unwrap() {
            assert!(buf.iter().all(|b| *b == (n % 251) as u8), "payload of {n}");
            sizes.push(n);
        }
        sizes
    });
    let mut client = Stream::connect(&name).unwrap();
    // Around every size where the way a message is read or written changes.
    let sizes = [
        0,
        1,
        0,
        4,
        251,
        252,
        253,
        1019,
        1020,
        1021,
        8191,
        8192,
        8193,
        16383,
        16384,
        16385,
        65536,
        65537,
        3 * 1024 * 1024,
        0,
        17,
        // A message buffer grows in steps with what arrives: 64 KiB, then twice
        // what arrived plus 64 KiB (192 KiB, 448 KiB, ...).
        196_607,
        196_608,
        196_609,
        9 * 1024 * 1024 + 7,
        1,
    ];
    for n in sizes {
        client.send(&vec![(n % 251) as u8; n]).unwrap();
    }
    drop(client);
    assert_eq!(server.join().unwrap(), sizes);
}

#[test]
fn recv_into_reports_more_data_and_returns_the_rest() {
    let (_w, name) = util::begin("recv_into_more_data");
    let listener = Listener::bind(&name).unwrap();
    let server = util::serve_one(listener, move |mut s| {
        s.send(b"0123456789").unwrap();
        s.send(b"next").unwrap();
        s.send(&[9u8; 100_000]).unwrap();
    });
    let mut client = Stream::connect(&name).unwrap();
    let mut buf = [0u8; 4];
    let part = client.recv_into(&mut buf).unwrap().unwrap();
    assert_eq!((part.len(), part.more_data()), (4, true));
    assert_eq!(&buf, b"0123");
    let part = client.recv_into(&mut buf).unwrap().unwrap();
    assert_eq!((part.len(), part.more_data()), (4, true));
    assert_eq!(&buf, b"4567");
    let part = client.recv_into(&mut buf).unwrap().unwrap();
    assert_eq!((part.len(), part.is_complete()), (2, true));
    assert_eq!(&buf[..2], b"89");
    let part = client.recv_into(&mut buf).unwrap().unwrap();
    assert!(part.is_complete());
    assert_eq!(&buf, b"next");
    // A large message read through a small buffer arrives whole, in order.
    let mut whole = Vec::new();
    let mut chunk = [0u8; 1000];
    loop {
        let part = client.recv_into(&mut chunk).unwrap().unwrap();
        whole.extend_from_slice(&chunk[..part.len()]);
        if part.is_complete() {
            break;
        }
    }
    assert_eq!(whole, vec![9u8; 100_000]);
    assert!(client.recv_into(&mut chunk).unwrap().is_none());
    server.join().unwrap();
}

#[test]
fn peek_shows_the_next_message_without_consuming_it() {
    let (_w, name) = util::begin("peek");
    let (_listener, mut client, mut server) = util::pair(&name);
    let mut buf = [0u8; 16];
    assert_eq!(server.peek(&mut buf).unwrap(), 0, "nothing sent yet");
    client.send(b"hello").unwrap();
    client.send(b"world").unwrap();
    let mut n = 0;
    for _ in 0..1000 {
        n = server.peek(&mut buf).unwrap();
        if n > 0 {
            break;
        }
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(&buf[..n], b"hello", "peek returns one message only");
    let mut msg = Vec::new();
    server.recv(&mut msg).unwrap();
    assert_eq!(msg, b"hello");
    server.recv(&mut msg).unwrap();
    assert_eq!(msg, b"world");
}

#[test]
fn write_sends_a_message_per_call_and_read_concatenates() {
    let (_w, name) = util::begin("read_write_traits");
    let (_listener, mut client, mut server) = util::pair(&name);
    client.write_all(b"one").unwrap();
    client.write_all(b"two").unwrap();
    client.flush().unwrap();
    let mut msg = Vec::new();
    server.recv(&mut msg).unwrap();
    assert_eq!(msg, b"one");
    server.send(b"abc").unwrap();
    server.send(b"").unwrap();
    server.send(b"def").unwrap();
    drop(server);
    let mut all = String::new();
    client.read_to_string(&mut all).unwrap();
    assert_eq!(all, "abcdef");
}

#[test]
fn write_vectored_sends_one_message_of_every_slice() {
    use std::io::IoSlice;
    let (_w, name) = util::begin("write_vectored");
    let (_listener, mut client, mut server) = util::pair(&name);
    // Small (copied behind the header), many slices, and large (gathered).
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let cases: [&[&[u8]]; 4] = [
        &[b"head", b"", b"tail"],
        &[b"a", b"b", b"c", b"d", b"e", b"f"],
        &[b"len", &big, b"end"],
        &[],
    ];
    for parts in cases {
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert_eq!(client.write_vectored(&slices).unwrap(), total);
        let mut msg = Vec::new();
        assert_eq!(server.recv(&mut msg).unwrap(), Some(total));
        assert_eq!(msg, parts.concat(), "one message holding every slice");
    }
}

#[cfg(unix)]
#[test]
fn write_vectored_in_byte_mode_writes_every_slice_in_order() {
    use std::io::IoSlice;
    let _w = util::Watchdog::start("write_vectored_bytes");
    let (mut raw, mut server) = raw_client_of_a_byte_mode_server("vectored-bytes");
    let big = vec![7u8; 300_000];
    let parts: [&[u8]; 6] = [b"1", b"22", b"", &big, b"333", b"4444"];
    let slices = parts.map(IoSlice::new);
    assert_eq!(
        server.write_vectored(&slices).unwrap(),
        parts.concat().len()
    );
    drop(server);
    let mut got = Vec::new();
    raw.read_to_end(&mut got).unwrap();
    assert_eq!(got, parts.concat(), "nothing added, nothing lost");
}

// ---------------------------------------------------------------------------------
// The size cap

// Writes a frame header by hand: the Unix wire contract (Windows messages are native).
#[cfg(unix)]
#[test]
fn oversized_announcement_is_refused_and_others_are_served() {
    let (_w, name) = util::begin("oversized_announcement");
    let listener = ListenerOptions::new()
        .max_message_size(1024)
        .create(&name)
        .unwrap();
    for (announced, ok) in [(1024u32, true), (1025, false), (u32::MAX, false)] {
        let mut raw = ConnectOptions::new()
            .mode(Mode::Byte)
            .connect(&name)
            .unwrap();
        let mut server = listener.accept().unwrap();
        raw.write_all(&announced.to_le_bytes()).unwrap();
        if ok {
            raw.write_all(&vec![1u8; announced as usize]).unwrap();
        }
        let mut buf = Vec::new();
        let result = server.recv(&mut buf);
        if ok {
            assert_eq!(result.unwrap(), Some(1024));
        } else {
            let e = result.unwrap_err();
            assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
            assert!(e.to_string().contains(&announced.to_string()), "{e}");
            assert_eq!(
                buf.capacity(),
                0,
                "nothing allocated for the refused message"
            );
            // The connection stays refused.
            assert_eq!(kind(server.recv(&mut buf)), ErrorKind::MessageTooLarge);
        }
        // Another client is served normally meanwhile.
        let mut good = Stream::connect(&name).unwrap();
        let mut good_server = listener.accept().unwrap();
        good.send(b"fine").unwrap();
        good_server.recv(&mut buf).unwrap();
        assert_eq!(buf, b"fine");
    }
}

#[test]
fn sending_over_the_cap_fails_before_writing() {
    let (_w, name) = util::begin("send_over_cap");
    let (_listener, mut client, mut server) = util::pair_with(
        &name,
        &ListenerOptions::new(),
        ConnectOptions::new().max_message_size(100),
    );
    assert_eq!(kind(client.send(&[0u8; 101])), ErrorKind::MessageTooLarge);
    client.send(&[7u8; 100]).unwrap();
    let mut buf = Vec::new();
    server.recv(&mut buf).unwrap();
    assert_eq!(
        buf,
        vec![7u8; 100],
        "nothing of the refused message on the wire"
    );
}

// ---------------------------------------------------------------------------------
// Connecting, waiting, busy

#[test]
fn connect_to_a_missing_pipe_is_not_found_after_the_timeout() {
    let (_w, name) = util::begin("not_found");
    let e = ConnectOptions::new()
        .timeout(Duration::from_millis(150))
        .connect(&name)
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound);
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    assert!(e.to_string().contains("waited"), "{e}");
    assert_eq!(kind(Stream::try_connect(&name)), ErrorKind::NotFound);
}

#[test]
fn connect_waits_for_a_server_that_starts_later() {
    let (_w, name) = util::begin("connect_waits");
    let server_name = name.clone();
    let server = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        serve_n(Listener::bind(&server_name).unwrap(), 1)
            .join()
            .unwrap();
    });
    let mut client = ConnectOptions::new()
        .timeout(Duration::from_secs(10))
        .connect(&name)
        .unwrap();
    assert_eq!(request(&mut client, b"x"), b"Response to: x");
    drop(client);
    server.join().unwrap();
}

#[test]
fn clients_beyond_max_instances_get_pipe_busy_then_connect_when_one_frees() {
    let (_w, name) = util::begin("busy");
    let listener = ListenerOptions::new()
        .max_instances(Some(2))
        .create(&name)
        .unwrap();
    let mut first = Stream::connect(&name).unwrap();
    let first_server = listener.accept().unwrap();
    let _second = Stream::connect(&name).unwrap();
    let _second_server = listener.accept().unwrap();
    assert_eq!(listener.instances(), 2);

    let quick = ConnectOptions::new()
        .timeout(Duration::from_millis(300))
        .clone();
    let e = quick.connect(&name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::PipeBusy, "{e}");
    assert_eq!(kind(Stream::try_connect(&name)), ErrorKind::PipeBusy);

    // A waiting client gets the instance as soon as one is released.
    let waiter_name = name.clone();
    let waiter = thread::spawn(move || {
        ConnectOptions::new()
            .timeout(Duration::from_secs(20))
            .connect(&waiter_name)
    });
    thread::sleep(Duration::from_millis(100));
    drop(first_server);
    let mut third_server = listener.accept().unwrap();
    let mut third = waiter.join().unwrap().unwrap();
    third.send(b"third").unwrap();
    let mut buf = Vec::new();
    third_server.recv(&mut buf).unwrap();
    assert_eq!(buf, b"third");
    // The released client sees its connection closed.
    assert_eq!(first.recv(&mut buf).unwrap(), None);
}

#[test]
fn pending_instances_accept_connections_while_the_server_is_busy() {
    let (_w, name) = util::begin("pending");
    let listener = ListenerOptions::new()
        .pending_instances(2)
        .create(&name)
        .unwrap();
    // Nobody calls accept: two clients still connect, the third finds no instance.
    let mut a = Stream::try_connect(&name).unwrap();
    let mut b = Stream::try_connect(&name).unwrap();
    assert_eq!(kind(Stream::try_connect(&name)), ErrorKind::PipeBusy);
    a.send(b"a").unwrap();
    b.send(b"b").unwrap();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for _ in 0..2 {
        let mut s = listener.accept().unwrap();
        s.recv(&mut buf).unwrap();
        got.push(buf.clone());
    }
    // Windows hands out connected instances in no particular order.
    got.sort();
    assert_eq!(got, [b"a", b"b"]);
}

#[test]
fn wait_times_out_then_returns_when_a_server_exists() {
    let (_w, name) = util::begin("wait");
    let e = npipe::wait(&name, Duration::from_millis(100)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout);
    let listener = Listener::bind(&name).unwrap();
    npipe::wait(&name, Duration::from_secs(5)).unwrap();
    assert_eq!(listener.instances(), 0, "wait does not connect");
    drop(listener);
    let e = npipe::wait(&name, Duration::ZERO).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout);
}

#[test]
fn call_is_one_transaction_with_a_server_in_another_process() {
    let (_w, name) = util::begin("call");
    let mut server = util::child("echo-server", &[&name]);
    server.expect_line("ready");
    for i in 0..20 {
        let reply = npipe::call(
            &name,
            format!("call {i}").as_bytes(),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(reply, format!("Response to: call {i}").as_bytes());
    }
    // And from another process too.
    let mut caller = util::child("call", &[&name, "from a child"]);
    assert_eq!(caller.expect_line("reply "), "Response to: from a child");
}

// ---------------------------------------------------------------------------------
// Deadlines of whole operations

/// A server that speaks the wire contract by hand (a byte-mode listener): it
/// accepts one client, reads the header of its request, and hands `serve` the
/// stream and the length the header announced.
#[cfg(unix)]
fn by_hand<T: Send + 'static>(
    name: &str,
    serve: impl FnOnce(Stream, usize) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let listener = ListenerOptions::new()
        .mode(Mode::Byte)
        .create(name)
        .unwrap();
    util::serve_one(listener, |mut stream| {
        let mut header = [0u8; 4];
        stream.read_exact(&mut header).unwrap();
        serve(stream, u32::from_le_bytes(header) as usize)
    })
}

/// A server that, for one client, reads a request frame, then sends the reply
/// frame `reply` in 12 pieces 0.9 s apart, each well within any timeout below and
/// all of them far beyond. It stops when the client is gone.
#[cfg(unix)]
fn trickling_server(name: &str, reply: &'static [u8]) -> thread::JoinHandle<()> {
    by_hand(name, move |mut stream, len| {
        stream.read_exact(&mut vec![0u8; len]).unwrap();
        let wire = util::frame(reply);
        for piece in wire.chunks(wire.len().div_ceil(12)) {
            if stream.write_all(piece).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(900));
        }
    })
}

/// A server that reads a request 256 KiB at a time, 0.3 s apart, and then
/// replies `done`. It stops when the client is gone, and returns how many bytes
/// of the request it got.
#[cfg(unix)]
fn slowly_reading_server(name: &str) -> thread::JoinHandle<usize> {
    by_hand(name, |mut stream, len| {
        let mut got = 0;
        let mut buf = vec![0u8; 256 * 1024];
        while got < len {
            thread::sleep(Duration::from_millis(300));
            match stream.read(&mut buf[..(len - got).min(256 * 1024)]) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got += n,
            }
        }
        let _ = stream.write_all(&util::frame(b"done"));
        got
    })
}

/// `call`'s timeout bounds the whole call: a reply trickled a piece at a time
/// (each piece within the timeout, all of them over ten seconds) ends the call
/// with `Timeout`. It used to bound each read, and the call succeeded after 11 s.
#[cfg(unix)]
#[test]
fn call_is_bounded_by_its_timeout_however_the_reply_trickles() {
    let (_w, name) = util::begin("call_trickle");
    let server = trickling_server(&name, b"a reply sent a piece at a time");
    let e = npipe::call(&name, b"hi", Duration::from_secs(2)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout, "{e}");
    server.join().unwrap();
}

/// The same for the request: a server that reads slowly (each read within the
/// timeout, the whole 8 MiB in about ten seconds) cannot stretch the call, which
/// gives up sending. The write timeout used to bound each wait for room in the
/// socket's buffer: the whole request was sent, over ten seconds.
#[cfg(unix)]
#[test]
fn call_is_bounded_by_its_timeout_however_slowly_the_server_reads() {
    let (_w, name) = util::begin("call_slow_reader");
    let server = slowly_reading_server(&name);
    let request = vec![7u8; 8 * 1024 * 1024];
    let e = npipe::call(&name, &request, Duration::from_secs(2)).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout, "{e}");
    let got = server.join().unwrap();
    assert!(
        got < request.len(),
        "the call gave up sending at its deadline, yet the server got all {got} bytes"
    );
}

/// `Stream::set_deadline` bounds every later operation, and a read that times out
/// keeps what arrived: with the deadline lifted, the rest of the same message
/// follows.
#[cfg(unix)]
#[test]
fn a_deadline_bounds_each_operation_and_keeps_what_arrived() {
    let (_w, name) = util::begin("set_deadline");
    let reply: &[u8] = b"twelve piece";
    let server = trickling_server(&name, reply);
    let mut stream = Stream::connect(&name).unwrap();
    // Pieces of 2 bytes arrive at 0, 0.9, 1.8, 2.7 s...: the header and part of
    // the payload by the deadline.
    stream.set_deadline(Some(std::time::Instant::now() + Duration::from_secs(3)));
    stream.send(b"hi").unwrap();
    let mut whole = Vec::new();
    let mut got = Vec::new();
    assert_eq!(kind(stream.recv(&mut got)), ErrorKind::Timeout);
    whole.extend_from_slice(&got);
    // A deadline already passed fails at once, with nothing lost.
    assert_eq!(kind(stream.recv(&mut got)), ErrorKind::Timeout);
    whole.extend_from_slice(&got);
    stream.set_deadline(None);
    stream.recv(&mut got).unwrap();
    whole.extend_from_slice(&got);
    assert_eq!(whole, reply, "the whole message, however timeouts split it");
    server.join().unwrap();
}

#[test]
fn many_clients_on_many_threads_all_get_their_replies() {
    let (_w, name) = util::begin("many_clients");
    let clients = 40;
    let server = serve_n(Listener::bind(&name).unwrap(), clients);
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let name = name.clone();
            thread::spawn(move || {
                let mut s = Stream::connect(&name).unwrap();
                for r in 0..25 {
                    let msg = format!("{c}:{r}");
                    assert_eq!(
                        request(&mut s, msg.as_bytes()),
                        format!("Response to: {msg}").as_bytes()
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    server.join().unwrap();
}

// ---------------------------------------------------------------------------------
// Byte mode

/// A byte-mode pipe named after `prefix`, a plain Unix socket connected to it
/// (no npipe on that side), and the server end npipe accepted.
#[cfg(unix)]
fn raw_client_of_a_byte_mode_server(prefix: &str) -> (std::os::unix::net::UnixStream, Stream) {
    let name = unique(prefix);
    let listener = ListenerOptions::new()
        .mode(Mode::Byte)
        .create(&name)
        .unwrap();
    let npipe::Address::Path(path) = listener.address().clone() else {
        panic!("path address expected");
    };
    let raw = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let server = listener.accept().unwrap();
    (raw, server)
}

#[cfg(unix)]
#[test]
fn byte_mode_adds_nothing_on_the_wire() {
    let _w = util::Watchdog::start("byte_mode");
    let (mut raw, mut server) = raw_client_of_a_byte_mode_server("bytes");
    raw.write_all(b"plain bytes").unwrap();
    raw.shutdown(Shutdown::Write).unwrap();
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"plain bytes");
    server.write_all(b"back").unwrap();
    drop(server);
    let mut back = Vec::new();
    raw.read_to_end(&mut back).unwrap();
    assert_eq!(back, b"back");
}

// ---------------------------------------------------------------------------------
// Names and ownership

#[test]
fn invalid_names_are_refused_with_the_rule() {
    for bad in ["a/b", "..", ".x", "nul\0byte", ""] {
        let e = Listener::bind(bad).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName, "{bad:?}");
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(kind(Stream::try_connect(bad)), ErrorKind::InvalidName);
    }
    let e = Listener::bind(r"\\server\pipe\x").unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Unsupported);
    // A pipe on another machine is reached through ssh (Unix) or SMB (Windows),
    // never created here; Windows says why in its own words
    // (`windows::servers_create_pipes_on_this_machine_only`).
    #[cfg(unix)]
    assert!(e.to_string().contains("is a pipe on server"), "{e}");
    // The socket path limit (`sun_path`); Windows takes names up to MAX_NAME_LEN.
    #[cfg(unix)]
    {
        let e = Listener::bind("x".repeat(120)).unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::InvalidName);
        assert!(e.to_string().contains("limit"), "{e}");
    }
}

#[test]
fn the_first_server_owns_the_name() {
    let (_w, name) = util::begin("first_owner");
    let listener = Listener::bind(&name).unwrap();
    let e = Listener::bind(&name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AddrInUse);
    assert_eq!(e.kind(), std::io::ErrorKind::AddrInUse);
    // Another process is refused too, and told who serves it.
    let mut other = util::child("hold-name", &[&name, "0", "0"]);
    let line = other.expect_line("error ");
    assert!(line.starts_with("AddrInUse"), "{line}");
    // The pid comes from the lock file; Windows cannot tell it without connecting.
    #[cfg(unix)]
    assert!(
        line.contains(&format!("pid {}", std::process::id())),
        "{line}"
    );
    drop(listener);
    let _again = Listener::bind(&name).unwrap();
}

#[cfg(unix)]
#[test]
fn dropping_the_listener_removes_its_files() {
    let (_w, name) = util::begin("files_removed");
    let listener = Listener::bind(&name).unwrap();
    let npipe::Address::Path(path) = listener.address().clone() else {
        panic!("path address expected");
    };
    let lock = path.with_file_name(format!(".npipe-{name}.lock"));
    let record = path.with_file_name(format!(".npipe-{name}.info"));
    assert!(path.exists() && lock.exists() && record.exists());
    drop(listener);
    assert!(!path.exists(), "socket file left behind");
    assert!(!lock.exists(), "lock file left behind");
    assert!(!record.exists(), "record file left behind");
}

#[cfg(unix)]
#[test]
fn a_stale_socket_from_a_killed_server_is_reclaimed() {
    let (_w, name) = util::begin("stale");
    let mut server = util::child("echo-server", &[&name]);
    server.expect_line("ready");
    let address = PipeName::new(&name).unwrap().address().unwrap();
    server.kill();
    let npipe::Address::Path(path) = &address else {
        panic!("path address expected")
    };
    assert!(path.exists(), "a SIGKILLed server leaves its socket file");
    let e = Stream::try_connect(&name).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound);
    assert!(e.to_string().contains("stale"), "{e}");
    let listener = Listener::bind(&name).unwrap();
    let served = serve_n(listener, 1);
    let mut client = Stream::connect(&name).unwrap();
    assert_eq!(request(&mut client, b"again"), b"Response to: again");
    drop(client);
    served.join().unwrap();
}

#[cfg(unix)]
#[test]
fn servers_starting_at_the_same_moment_elect_exactly_one_owner() {
    let (_w, name) = util::begin("election");
    // Leave a stale socket behind first, so every contender also tries to reclaim it.
    let mut dead = util::child("echo-server", &[&name]);
    dead.expect_line("ready");
    dead.kill();
    let start_at = (std::time::SystemTime::now() + Duration::from_millis(400))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let mut contenders: Vec<_> = (0..6)
        .map(|_| util::child("hold-name", &[&name, &start_at, "1500"]))
        .collect();
    let outcomes: Vec<String> = contenders.iter_mut().map(|c| c.expect_line("")).collect();
    let winners = outcomes.iter().filter(|o| *o == "created").count();
    assert_eq!(winners, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .filter(|o| *o != "created")
            .all(|o| o.starts_with("error AddrInUse")),
        "{outcomes:?}"
    );
    for c in &mut contenders {
        assert!(c.wait_for(Duration::from_secs(20)).success());
    }
    let address = PipeName::new(&name).unwrap().address().unwrap();
    let npipe::Address::Path(path) = address else {
        panic!()
    };
    assert!(!path.exists(), "the winner removed its socket on exit");
}

// ---------------------------------------------------------------------------------
// Security

#[cfg(unix)]
#[test]
fn the_socket_file_mode_follows_the_access_policy() {
    use std::os::unix::fs::PermissionsExt;
    let _w = util::Watchdog::start("socket_mode");
    for (access, mode) in [
        (Access::Owner, 0o600),
        (Access::Group, 0o660),
        (Access::Everyone, 0o666),
    ] {
        let name = unique("mode");
        let listener = ListenerOptions::new().access(access).create(&name).unwrap();
        let npipe::Address::Path(path) = listener.address() else {
            panic!()
        };
        let actual = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(actual, mode, "{access:?}");
    }
}

#[cfg(unix)]
#[test]
fn another_user_is_refused_by_default_and_admitted_when_allowed() {
    let _w = util::Watchdog::start("other_user");
    crate::require_root!("needs root to run a peer as user nobody (setpriv)");
    type Configure = fn(&mut ListenerOptions);
    let cases: [(&str, Configure); 4] = [
        ("owner", |_| {}),
        ("everyone", |o| {
            o.access(Access::Everyone);
        }),
        ("allow-uid", |o| {
            o.allow_uid(65534);
        }),
        ("allow-gid", |o| {
            o.allow_gid(65534);
        }),
    ];
    for (label, configure) in cases {
        let name = unique(label);
        let mut opts = ListenerOptions::new();
        configure(&mut opts);
        let listener = opts.create(&name).unwrap();
        let mut peer = util::nobody("connect-kind", &[&name]);
        if label == "owner" {
            assert_eq!(peer.expect_line(""), "error AccessDenied", "{label}");
        } else {
            let mut s = listener.accept().unwrap();
            let creds = s.peer_credentials().unwrap();
            assert_eq!(creds.uid(), Some(65534));
            assert_eq!(creds.pid(), Some(peer.id()));
            respond(&mut s);
            assert_eq!(peer.expect_line(""), "ok Response to: whoami", "{label}");
        }
        assert!(peer.wait_for(Duration::from_secs(10)).success());
    }
}

#[cfg(target_os = "linux")]
#[test]
fn abstract_sockets_are_guarded_by_the_peer_check() {
    let _w = util::Watchdog::start("abstract_peer_check");
    crate::require_root!("needs root to run a peer as user nobody (setpriv)");
    let name = format!("@{}", unique("abs"));
    let listener = Arc::new(Listener::bind(&name).unwrap());
    // The kernel lets anyone connect to an abstract socket; npipe refuses on accept.
    let accepting = Arc::clone(&listener);
    let server = thread::spawn(move || {
        let mut s = accepting.accept().unwrap();
        respond(&mut s);
    });
    let mut peer = util::nobody("connect-kind", &[&name]);
    assert_eq!(peer.expect_line(""), "error AccessDenied");
    assert!(peer.wait_for(Duration::from_secs(10)).success());
    // The owner is still served.
    let mut me = Stream::connect(&name).unwrap();
    assert_eq!(request(&mut me, b"me"), b"Response to: me");
    drop(me);
    server.join().unwrap();
    assert_eq!(listener.denied(), 1);
}

#[cfg(target_os = "linux")]
use std::sync::Arc;

#[cfg(unix)]
#[test]
fn a_client_can_require_the_server_user() {
    let (_w, name) = util::begin("expect_server_uid");
    let _listener = Listener::bind(&name).unwrap();
    let me = PeerCredentialsOfSelf::uid();
    let e = ConnectOptions::new()
        .expect_server_uid(me.wrapping_add(1))
        .connect(&name)
        .unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::AccessDenied);
    assert!(e.to_string().contains("not the expected uid"), "{e}");
    ConnectOptions::new()
        .expect_server_uid(me)
        .connect(&name)
        .unwrap();
}

#[cfg(unix)]
struct PeerCredentialsOfSelf;
#[cfg(unix)]
impl PeerCredentialsOfSelf {
    #[cfg(unix)]
    fn uid() -> u32 {
        nix::unistd::geteuid().as_raw()
    }
}

#[test]
fn peer_credentials_on_both_ends_across_processes() {
    let (_w, name) = util::begin("peer_credentials");
    let mut server = util::child("echo-server", &[&name]);
    let server_pid: u32 = server.expect_line("ready ").parse().unwrap();
    assert_eq!(server_pid, server.id());
    let client = Stream::connect(&name).unwrap();
    let creds = client.peer_credentials().unwrap();
    assert_eq!(creds.pid(), Some(server_pid));
    #[cfg(unix)]
    assert_eq!(creds.uid(), Some(PeerCredentialsOfSelf::uid()));

    let listener = Listener::bind(unique("creds2")).unwrap();
    let _c = Stream::connect(listener.name()).unwrap();
    let s = listener.accept().unwrap();
    assert_eq!(
        s.peer_credentials().unwrap().pid(),
        Some(std::process::id())
    );
}

// ---------------------------------------------------------------------------------
// Direction, disconnect, half-close, timeouts

#[test]
fn direction_is_enforced_on_both_ends() {
    let (_w, name) = util::begin("direction");
    let (_listener, mut client, mut server) = util::pair_with(
        &name,
        ListenerOptions::new().direction(Direction::Inbound),
        &ConnectOptions::new(),
    );
    let e = server.send(b"no").unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Unsupported);
    assert!(e.to_string().contains("read-only"), "{e}");
    client.send(b"up").unwrap();
    let mut buf = Vec::new();
    server.recv(&mut buf).unwrap();
    assert_eq!(buf, b"up");
    assert_eq!(
        client.recv(&mut buf).unwrap(),
        None,
        "nothing ever comes back"
    );

    let name = unique("outbound");
    let (_listener, mut client, mut server) = util::pair_with(
        &name,
        ListenerOptions::new().direction(Direction::Outbound),
        &ConnectOptions::new(),
    );
    assert_eq!(kind(server.recv(&mut buf)), ErrorKind::Unsupported);
    server.send(b"down").unwrap();
    client.recv(&mut buf).unwrap();
    assert_eq!(buf, b"down");
    assert_eq!(kind(client.send(b"x")), ErrorKind::Disconnected);

    // A client that declares itself read-only is refused writes locally.
    let mut reader = ConnectOptions::new()
        .direction(Direction::Outbound)
        .connect(&name)
        .unwrap();
    assert_eq!(kind(reader.send(b"x")), ErrorKind::Unsupported);
}

// Windows pipes cannot half-close (tests/windows.rs covers disconnect there).
#[cfg(unix)]
#[test]
fn half_close_and_disconnect() {
    let (_w, name) = util::begin("half_close");
    let (listener, mut client, mut server) = util::pair(&name);
    client.send(b"last request").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut buf = Vec::new();
    assert_eq!(server.recv(&mut buf).unwrap(), Some(12));
    assert_eq!(server.recv(&mut buf).unwrap(), None, "end of requests");
    server.send(b"reply after half-close").unwrap();
    server.disconnect().unwrap();
    client.recv(&mut buf).unwrap();
    assert_eq!(buf, b"reply after half-close", "nothing lost on disconnect");
    assert_eq!(client.recv(&mut buf).unwrap(), None);
    assert_eq!(listener.instances(), 0, "disconnect frees the instance");
}

// Cuts a hand-written frame short: the Unix wire contract (Windows messages are atomic).
#[cfg(unix)]
#[test]
fn a_peer_vanishing_mid_message_is_a_disconnect() {
    let (_w, name) = util::begin("mid_message");
    let (_listener, mut raw, mut server) = util::pair_with(
        &name,
        &ListenerOptions::new(),
        ConnectOptions::new().mode(Mode::Byte),
    );
    raw.write_all(&10u32.to_le_bytes()).unwrap();
    raw.write_all(b"abc").unwrap();
    drop(raw);
    let mut buf = Vec::new();
    let e = server.recv(&mut buf).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected);
    assert!(e.to_string().contains("3 of 10"), "{e}");
}

#[test]
fn read_timeouts_are_reported_as_timeouts() {
    let (_w, name) = util::begin("read_timeout");
    let (_listener, mut client, _server) = util::pair(&name);
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = Vec::new();
    let e = client.recv(&mut buf).unwrap_err();
    assert_eq!(ErrorKind::of(&e), ErrorKind::Timeout);
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
}

// ---------------------------------------------------------------------------------
// Fitting std conventions

#[test]
fn public_types_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Stream>();
    send_sync::<Listener>();
    send_sync::<ListenerOptions>();
    send_sync::<ConnectOptions>();
    send_sync::<PipeName>();
    send_sync::<npipe::Error>();
}

#[cfg(unix)]
#[test]
fn conversions_to_and_from_std() {
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    let _w = util::Watchdog::start("conversions");
    let (a, b) = UnixStream::pair().unwrap();
    let mut a = Stream::from_std(a, Mode::Message);
    let mut b = Stream::from_std(b, Mode::Message);
    assert!(a.as_raw_fd() >= 0);
    a.send(b"one").unwrap();
    a.send(b"two").unwrap();
    let mut buf = Vec::new();
    b.recv(&mut buf).unwrap();
    // "two" was read ahead with "one": converting would lose it, so it is refused.
    let b = b.into_std().expect_err("read-ahead bytes would be lost");
    let mut b = b;
    b.recv(&mut buf).unwrap();
    assert_eq!(buf, b"two");
    let raw: UnixStream = b.into_std().expect("nothing buffered now");
    drop(raw);
    assert_eq!(a.recv(&mut buf).unwrap(), None);
}

// ---------------------------------------------------------------------------------
// $NPIPE_DIR (in child processes: the environment is per process)

#[cfg(unix)]
#[test]
fn npipe_dir_is_used_and_unsafe_directories_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let _w = util::Watchdog::start("npipe_dir");
    let base = std::env::temp_dir().join(unique("dir"));
    std::fs::create_dir(&base).unwrap();
    let set_mode = |mode| std::fs::set_permissions(&base, std::fs::Permissions::from_mode(mode));
    let address_in = |dir: &std::path::Path| {
        let mut cmd = util::drive::command("address", &["svc"]);
        cmd.env("NPIPE_DIR", dir);
        util::drive::spawn(cmd).expect_line("")
    };
    set_mode(0o700).unwrap();
    assert_eq!(address_in(&base), format!("address {}/svc", base.display()));
    set_mode(0o777).unwrap();
    let refused = address_in(&base);
    assert!(refused.starts_with("error AccessDenied"), "{refused}");
    assert!(refused.contains("sticky"), "{refused}");
    set_mode(0o1777).unwrap();
    assert!(address_in(&base).starts_with("address "));
    if util::running_as_root() {
        set_mode(0o755).unwrap();
        nix::unistd::chown(&base, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        let refused = address_in(&base);
        assert!(refused.contains("belongs to uid 65534"), "{refused}");
        nix::unistd::chown(&base, Some(nix::unistd::Uid::from_raw(0)), None).unwrap();
    }
    // A server and a client agree on the directory.
    set_mode(0o700).unwrap();
    let mut server_cmd = util::drive::command("echo-server", &["svc"]);
    server_cmd.env("NPIPE_DIR", &base);
    let mut server = util::drive::spawn(server_cmd);
    server.expect_line("ready");
    assert!(base.join("svc").exists());
    let mut call = util::drive::command("call", &["svc", "in dir"]);
    call.env("NPIPE_DIR", &base);
    assert_eq!(
        util::drive::spawn(call).expect_line("reply "),
        "Response to: in dir"
    );
    server.kill();
    std::fs::remove_dir_all(&base).unwrap();
}

// ---------------------------------------------------------------------------------
// The wire contract, spoken by Python's standard library

#[cfg(unix)]
const PYTHON_PEER: &str = r#"
import socket, struct, sys

def send(s, payload):
    s.sendall(struct.pack('<I', len(payload)) + payload)

def recv_exact(s, n):
    buf = b''
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError('closed mid-message')
        buf += chunk
    return buf

def recv(s):
    header = s.recv(4, socket.MSG_WAITALL)
    if not header:
        return None
    (n,) = struct.unpack('<I', header)
    return recv_exact(s, n)

role, path = sys.argv[1], sys.argv[2]
if role == 'client':
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    for payload in [b'hello', b'', b'x' * 100000]:
        send(s, payload)
        print(repr(recv(s)[:20]), flush=True)
else:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    print('ready', flush=True)
    conn, _ = srv.accept()
    while True:
        m = recv(conn)
        if m is None:
            break
        send(conn, b'py:' + m)
    srv.close()
"#;

#[cfg(unix)]
fn python() -> std::process::Command {
    std::process::Command::new("python3")
}

#[cfg(unix)]
#[test]
fn a_python_client_speaks_the_wire_contract_to_a_rust_server() {
    let (_w, name) = util::begin("python_client");
    let listener = Listener::bind(&name).unwrap();
    let npipe::Address::Path(path) = listener.address().clone() else {
        panic!()
    };
    let server = serve_n(listener, 1);
    let stdout = util::peers::python(PYTHON_PEER, &["client".as_ref(), path.as_os_str()]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "b'Response to: hello'",
            "b'Response to: '",
            "b'Response to: xxxxxxx'"
        ]
    );
    server.join().unwrap();
}

#[cfg(unix)]
#[test]
fn a_rust_client_speaks_the_wire_contract_to_a_python_server() {
    use std::io::BufRead;
    let (_w, name) = util::begin("python_server");
    let npipe::Address::Path(path) = PipeName::new(&name).unwrap().address().unwrap() else {
        panic!()
    };
    let mut py = python()
        .args(["-c", PYTHON_PEER, "server"])
        .arg(&path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let mut ready = String::new();
    std::io::BufReader::new(py.stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    let mut client = Stream::connect(&name).unwrap();
    for payload in [b"abc".to_vec(), Vec::new(), vec![b'z'; 70_000]] {
        let mut expected = b"py:".to_vec();
        expected.extend_from_slice(&payload);
        assert_eq!(request(&mut client, &payload), expected);
    }
    drop(client);
    assert!(py.wait().unwrap().success());
    let _ = std::fs::remove_file(&path);
}

// ---------------------------------------------------------------------------------
// Roles played by child processes

pub(crate) mod roles {
    use super::*;
    use crate::util::drive::say;

    /// `echo-server NAME`: serves until killed.
    pub(crate) fn echo_server(args: &[&str]) -> i32 {
        let listener = Listener::bind(args[0]).expect("create");
        say(format!("ready {}", std::process::id()));
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || respond(&mut stream));
        }
        0
    }

    /// `hold-name NAME START_AT_EPOCH_MS HOLD_MS`: creates the pipe at the given moment,
    /// prints `created` or `error <Kind> <message>`, holds it, exits.
    pub(crate) fn hold_name(args: &[&str]) -> i32 {
        let start_at: u128 = args[1].parse().unwrap_or(0);
        let hold: u64 = args[2].parse().unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        if start_at > now {
            thread::sleep(Duration::from_millis((start_at - now) as u64));
        }
        match Listener::bind(args[0]) {
            Ok(listener) => {
                say("created");
                thread::sleep(Duration::from_millis(hold));
                drop(listener);
            }
            Err(e) => say(format!("error {:?} {e}", ErrorKind::of(&e))),
        }
        0
    }

    /// `call NAME MESSAGE`: prints `reply <text>` or `error <Kind>`.
    pub(crate) fn call(args: &[&str]) -> i32 {
        match npipe::call(args[0], args[1].as_bytes(), Duration::from_secs(5)) {
            Ok(reply) => say(format!("reply {}", String::from_utf8_lossy(&reply))),
            Err(e) => say(format!("error {:?} {e}", ErrorKind::of(&e))),
        }
        0
    }

    /// `connect-kind NAME`: one request; prints `ok <reply>` or `error <Kind>`.
    pub(crate) fn connect_kind(args: &[&str]) -> i32 {
        let result = ConnectOptions::new()
            .timeout(Duration::from_secs(2))
            .connect(args[0])
            .and_then(|mut s| {
                s.send(b"whoami")?;
                let mut reply = Vec::new();
                match s.recv(&mut reply)? {
                    Some(_) => Ok(reply),
                    None => Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe)),
                }
            });
        match result {
            Ok(reply) => say(format!("ok {}", String::from_utf8_lossy(&reply))),
            Err(e) => say(format!("error {:?}", ErrorKind::of(&e))),
        }
        0
    }

    /// `address NAME`: prints `address <addr>` or `error <Kind> <message>`.
    pub(crate) fn address(args: &[&str]) -> i32 {
        match PipeName::new(args[0]).and_then(|n| n.address()) {
            Ok(a) => say(format!("address {a}")),
            Err(e) => say(format!("error {:?} {e}", ErrorKind::of(&e))),
        }
        0
    }
}
