//! The async API on tokio: [`Listener`] and [`Stream`] with the names and semantics
//! of the blocking ones, plus [`MessageCodec`] for `Stream`/`Sink` of messages.
//!
//! Enabled by the cargo feature `tokio`. Everything here must be created inside a
//! tokio runtime (with I/O and time enabled).
//!
//! - Message mode: [`Stream::send`], [`Stream::recv`], [`Stream::recv_into`] (with
//!   [`Received::more_data`](crate::Received::more_data)), the same maximum message
//!   size checked before anything is allocated, or [`Stream::into_framed`] for a
//!   `futures::Stream` + `Sink` of messages.
//! - Byte mode: [`Stream`] implements `AsyncRead` and `AsyncWrite`, and splits into
//!   [`ReadHalf`] and [`WriteHalf`].
//! - The access policy, peer credentials, `max_instances` (clients wait, then get
//!   `PipeBusy`) and connect timeouts (`NotFound`, `PipeBusy`) behave as in the
//!   blocking API: both run the same code for them.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use npipe::tokio::{Listener, Stream};
//!
//! let listener = Listener::bind("demo-async")?;
//! tokio::spawn(async move {
//!     while let Ok(mut stream) = listener.accept().await {
//!         tokio::spawn(async move {
//!             let mut request = Vec::new();
//!             while let Ok(Some(_)) = stream.recv(&mut request).await {
//!                 let _ = stream.send(&request).await;
//!             }
//!         });
//!     }
//! });
//!
//! let mut client = Stream::connect("demo-async").await?;
//! client.send(b"hello").await?;
//! let mut reply = Vec::new();
//! match client.recv(&mut reply).await? {
//!     Some(_) => assert_eq!(reply, b"hello"),
//!     // The server closed the connection without replying.
//!     None => eprintln!("no reply"),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! ## Platform-specific behavior
//!
//! Windows: real named pipes with native messages, through npipe's own overlapped
//! I/O (tokio's named pipes would split long messages without telling). The server
//! end's `shutdown`/`disconnect` blocks until the client has read everything.

mod listener;
mod stream;

pub use crate::frame::codec::MessageCodec;
pub use listener::Listener;
pub use stream::{ReadHalf, Stream, WriteHalf};
