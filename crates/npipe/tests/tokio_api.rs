//! The tokio API: the same behaviour as the blocking one, through async calls.

// Some helpers and imports serve only the Unix-only tests below.
#![cfg_attr(windows, allow(unused_imports, dead_code))]

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use npipe::tokio::{Listener, MessageCodec, Stream};
use npipe::{ConnectOptions, ErrorKind, ListenerOptions, Mode};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::util::{self, runtime, unique, Watchdog};

/// Compile-time promises: the types and the futures they return are `Send` (and
/// the handles `Sync`), so they work in `tokio::spawn` on a multi-thread runtime.
#[allow(dead_code)]
const _: fn() = || {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Listener>();
    send_sync::<Stream>();
    send_sync::<npipe::tokio::ReadHalf>();
    send_sync::<npipe::tokio::WriteHalf>();
    send_sync::<MessageCodec>();
    send_sync::<npipe::Server>();
    send_sync::<npipe::ServerHandle>();
    send_sync::<npipe::SpawnedServer>();
    send_sync::<npipe::Request>();
    send_sync::<npipe::Response>();
    send_sync::<npipe::Stats>();

    let listener: &Listener = unreachable_ref();
    send(&listener.accept());
    send(&Stream::connect("x"));
    send(&Stream::try_connect("x"));
    send(&Stream::connect_with("x", &ConnectOptions::new()));
    let stream: &mut Stream = unreachable_ref();
    send(&stream.send(b""));
    send(&stream.recv(&mut Vec::new()));
    send(&stream.recv_into(&mut []));
    let (read, write) = (
        unreachable_ref::<npipe::tokio::ReadHalf>(),
        unreachable_ref::<npipe::tokio::WriteHalf>(),
    );
    send(&read.recv(&mut Vec::new()));
    send(&write.send(b""));
    let server: npipe::Server = unreachable_value();
    send(&server.run());
};

#[allow(dead_code, clippy::diverging_sub_expression)]
fn unreachable_ref<'a, T>() -> &'a mut T {
    unreachable!("only used in a function that is never called")
}

#[allow(dead_code, clippy::diverging_sub_expression)]
fn unreachable_value<T>() -> T {
    unreachable!("only used in a function that is never called")
}

#[test]
fn messages_round_trip_with_more_data_and_empty_messages() {
    let _w = Watchdog::start("messages_round_trip_with_more_data_and_empty_messages");
    runtime().block_on(async {
        let name = unique("tk-msg");
        let listener = Listener::bind(&name).unwrap();
        let server = tokio::spawn(async move {
            let mut s = listener.accept().await.unwrap();
            assert!(s.is_server());
            let mut m = Vec::new();
            while s.recv(&mut m).await.unwrap().is_some() {
                s.send(&m).await.unwrap();
            }
        });
        let mut c = Stream::connect(&name).await.unwrap();
        assert_eq!(c.mode(), Mode::Message);
        let me = c.peer_credentials().unwrap();
        assert_eq!(me.pid(), Some(std::process::id()));

        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        c.send(&big).await.unwrap();
        c.send(b"").await.unwrap();
        c.send(b"tail").await.unwrap();
        // recv_into in small pieces reports more_data until the message ends.
        let mut piece = [0u8; 4096];
        let mut got = Vec::new();
        loop {
            let r = c.recv_into(&mut piece).await.unwrap().unwrap();
            got.extend_from_slice(&piece[..r.len()]);
            if r.is_complete() {
                break;
            }
            assert!(r.more_data());
        }
        assert_eq!(got, big);
        let mut m = vec![1, 2, 3];
        assert_eq!(c.recv(&mut m).await.unwrap(), Some(0));
        assert!(m.is_empty());
        // Part of a message by recv_into, the rest by recv.
        let r = c.recv_into(&mut piece[..1]).await.unwrap().unwrap();
        assert_eq!((&piece[..1], r.more_data()), (&b"t"[..], true));
        assert_eq!(c.recv(&mut m).await.unwrap(), Some(3));
        assert_eq!(m, b"ail");
        // Large messages around the steps in which a receive buffer grows (64 KiB,
        // 192 KiB, ...), into a fresh buffer and into the one of a larger message.
        let mut reused = Vec::new();
        for n in [65_535, 65_537, 196_609, 9 * 1024 * 1024 + 7, 196_608] {
            let message: Vec<u8> = (0..n).map(|i| (i % 253) as u8).collect();
            c.send(&message).await.unwrap();
            let mut fresh = Vec::new();
            assert_eq!(c.recv(&mut fresh).await.unwrap(), Some(n));
            assert!(fresh == message, "a message of {n} bytes arrives whole");
            c.send(&message).await.unwrap();
            assert_eq!(c.recv(&mut reused).await.unwrap(), Some(n));
            assert!(reused == message, "a message of {n} bytes arrives whole");
        }
        drop(c);
        server.await.unwrap();
    });
}

// Writes a frame by hand (the Unix wire contract); tests/windows.rs covers Windows.
#[cfg(unix)]
#[test]
fn recv_is_cancel_safe() {
    let _w = Watchdog::start("recv_is_cancel_safe");
    runtime().block_on(async {
        // A byte-mode client writes the raw frame in two parts.
        let (_listener, mut c, mut s) = util::ends::tokio_pair_with(
            &unique("tk-cancel"),
            &ListenerOptions::new(),
            ConnectOptions::new().mode(Mode::Byte),
        )
        .await;
        let message: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
        let wire = util::frame(&message);
        c.write_all(&wire[..20_000]).await.unwrap();
        let mut m = b"untouched".to_vec();
        // The header and part of the payload are consumed, then recv is cancelled.
        let first = tokio::time::timeout(Duration::from_millis(100), s.recv(&mut m)).await;
        assert!(first.is_err(), "the message is not complete yet");
        assert_eq!(m, b"untouched", "buf only changes on completion");
        c.write_all(&wire[20_000..]).await.unwrap();
        assert_eq!(s.recv(&mut m).await.unwrap(), Some(message.len()));
        assert_eq!(m, message, "nothing lost to the cancellation");
        // A peer that leaves mid-message is a Disconnected error.
        c.write_all(&wire[..10]).await.unwrap();
        drop(c);
        let e = s.recv(&mut m).await.unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Disconnected, "{e}");
    });
}

#[test]
fn framed_stream_and_sink() {
    let _w = Watchdog::start("framed_stream_and_sink");
    runtime().block_on(async {
        let name = unique("tk-framed");
        let listener = Listener::bind(&name).unwrap();
        let server = tokio::spawn(async move {
            let s = listener.accept().await.unwrap();
            let mut framed = s.into_framed().unwrap();
            while let Some(m) = framed.next().await {
                let m = m.unwrap();
                let mut reply = b"re:".to_vec();
                reply.extend_from_slice(&m);
                framed.send(Bytes::from(reply)).await.unwrap();
            }
        });
        let mut c = Stream::connect(&name).await.unwrap();
        // Mixed: plain send/recv on one side, codec on the other.
        for text in [&b"one"[..], b"", b"three"] {
            c.send(text).await.unwrap();
            let mut m = Vec::new();
            c.recv(&mut m).await.unwrap().unwrap();
            assert_eq!(&m[..3], b"re:");
            assert_eq!(&m[3..], text);
        }
        let mut framed = c.into_framed().unwrap();
        framed.send(Bytes::from_static(b"four")).await.unwrap();
        assert_eq!(&framed.next().await.unwrap().unwrap()[..], b"re:four");
        // The codec makes room for a large message as its bytes arrive.
        let large: Vec<u8> = (0..3 * 1024 * 1024 + 5).map(|i| (i % 253) as u8).collect();
        framed.send(Bytes::from(large.clone())).await.unwrap();
        let reply = framed.next().await.unwrap().unwrap();
        assert!(reply[3..] == large[..], "a large message arrives whole");
        drop(framed);
        server.await.unwrap();
    });
}

#[test]
fn oversized_announcement_is_refused_and_too_large_send_sends_nothing() {
    let _w = Watchdog::start("oversized_announcement_is_refused");
    runtime().block_on(async {
        let (_listener, mut c, mut s) = util::ends::tokio_pair_with(
            &unique("tk-big"),
            ListenerOptions::new().max_message_size(1024),
            &ConnectOptions::new(),
        )
        .await;
        // The client's cap is 16 MiB: 2 KiB goes out, the server refuses it.
        c.send(&[0u8; 2048]).await.unwrap();
        let mut m = Vec::new();
        let e = s.recv(&mut m).await.unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge, "{e}");
        assert_eq!(m.capacity(), 0, "nothing allocated for the refused message");
        let e = s.recv(&mut m).await.unwrap_err();
        assert_eq!(
            ErrorKind::of(&e),
            ErrorKind::MessageTooLarge,
            "stays refused"
        );
        // The server's own cap applies to what it sends.
        let e = s.send(&[0u8; 1025]).await.unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::MessageTooLarge);
    });
}

// Ends with a half-close, which Windows pipes do not have; tests/windows.rs covers Windows.
#[cfg(unix)]
#[test]
fn byte_mode_async_read_write_and_split() {
    let _w = Watchdog::start("byte_mode_async_read_write_and_split");
    runtime().block_on(async {
        let name = unique("tk-bytes");
        let mut opts = ListenerOptions::new();
        opts.mode(Mode::Byte);
        let listener = Listener::bind_with(&name, &opts).unwrap();
        let server = tokio::spawn(async move {
            let s = listener.accept().await.unwrap();
            let (mut r, mut w) = s.into_split();
            tokio::io::copy(&mut r, &mut w).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut copts = ConnectOptions::new();
        copts.mode(Mode::Byte);
        let mut c = Stream::connect_with(&name, &copts).await.unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let sent = data.clone();
            let (mut r, mut w) = c.into_split();
            let writer = tokio::spawn(async move {
                w.write_all(&sent).await.unwrap();
                w.shutdown().await.unwrap();
                w
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, data, "bytes come back unchanged, nothing added");
            writer
        };
        writer.await.unwrap();
        server.await.unwrap();
        // Vectored writes, on a whole stream and on a write half.
        let (_listener, mut c2, s2) =
            util::ends::tokio_pair_with(&unique("tk-vectored"), &opts, &copts).await;
        assert!(c2.is_write_vectored());
        let parts: [&[u8]; 5] = [b"vec", b"", b"tored", &data, b"!"];
        let mut slices = parts.map(std::io::IoSlice::new);
        let mut left: &mut [std::io::IoSlice<'_>] = &mut slices;
        while !left.is_empty() {
            let n = c2.write_vectored(left).await.unwrap();
            std::io::IoSlice::advance_slices(&mut left, n);
        }
        let (_r, mut w) = c2.into_split();
        assert!(w.is_write_vectored());
        let n = w
            .write_vectored(&[std::io::IoSlice::new(b"ha"), std::io::IoSlice::new(b"lf")])
            .await
            .unwrap();
        assert_eq!(n, 4, "small slices leave in one call");
        w.shutdown().await.unwrap();
        let mut got = Vec::new();
        let (mut sr, _sw) = s2.into_split();
        sr.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, [&parts.concat()[..], b"half"].concat());
        // AsyncRead/AsyncWrite refuse message mode instead of losing boundaries.
        let (_listener, c2, _s2) = util::ends::tokio_pair(&unique("tk-nobytes")).await;
        c = c2;
        let e = c.write_all(b"x").await.unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::Unsupported);
    });
}

#[test]
fn connect_reports_not_found_and_pipe_busy() {
    let _w = Watchdog::start("connect_reports_not_found_and_pipe_busy");
    runtime().block_on(async {
        let mut quick = ConnectOptions::new();
        quick.timeout(Duration::from_millis(200));
        let e = Stream::connect_with(unique("tk-absent"), &quick)
            .await
            .unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::NotFound, "{e}");

        let name = unique("tk-busy");
        let (listener, c, s) = util::ends::tokio_pair_with(
            &name,
            ListenerOptions::new()
                .max_instances(Some(1))
                .pending_instances(1),
            &ConnectOptions::new(),
        )
        .await;
        assert_eq!(listener.instances(), 1);
        // The only instance is taken: a second accept waits, clients get PipeBusy.
        let pending_accept = tokio::time::timeout(Duration::from_millis(100), listener.accept());
        assert!(
            pending_accept.await.is_err(),
            "accept waits at max_instances"
        );
        let e = Stream::connect_with(&name, &quick).await.unwrap_err();
        assert_eq!(ErrorKind::of(&e), ErrorKind::PipeBusy, "{e}");
        // Releasing the instance lets the next client in.
        drop((c, s));
        let (c, s) = tokio::join!(Stream::connect(&name), listener.accept());
        c.unwrap();
        s.unwrap();
        assert_eq!(listener.denied(), 0);
    });
}
