//! Streams that are opened and then held open (`open_streams`), so that stream counts rise on
//! both sides; see docs/peer-contract.md. libp2p-stream opens and accepts them.

use std::collections::BTreeMap;

use futures::{AsyncReadExt, StreamExt};
use libp2p::{PeerId, Stream, StreamProtocol};
use tokio::sync::mpsc::UnboundedSender;

use crate::events::Event;

/// The protocol of held streams.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/meshgate/hold/1.0.0");

/// Accepts inbound hold streams for as long as the peer runs and holds each one.
///
/// libp2p-stream hands inbound streams over a channel with room for one and drops (resets) a
/// stream that finds it full. go-libp2p opens the next stream of `open_streams` as soon as the
/// last is negotiated, so a few of a burst can be dropped before this task takes the last one:
/// on loopback 0 to 5 of 50, up to half under full CPU load. The opener sees those as failed
/// (go-libp2p: `stream reset`). A thread of its own, parked between streams, wakes more slowly
/// than a tokio task and dropped more.
pub fn accept(control: &mut libp2p_stream::Control) -> Result<(), String> {
    let mut incoming = control.accept(PROTOCOL).map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        while let Some((peer, stream)) = incoming.next().await {
            tracing::debug!(%peer, "holding an inbound stream");
            tokio::spawn(hold(stream));
        }
    });
    Ok(())
}

/// Opens `count` streams to `peer` one after another and holds each open. Each distinct
/// failure is sent to `events` once, as an `open_streams` error (with the command's `cmd_id`)
/// with how many streams failed that way.
pub fn open(
    mut control: libp2p_stream::Control,
    peer: PeerId,
    count: usize,
    cmd_id: Option<String>,
    events: UnboundedSender<Event>,
) {
    tokio::spawn(async move {
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..count {
            match control.open_stream(peer, PROTOCOL).await {
                Ok(stream) => {
                    tokio::spawn(hold(stream));
                }
                Err(e) => *failures.entry(crate::peer::chain(&e)).or_default() += 1,
            }
        }
        for (text, failed) in failures {
            let _ = events.send(Event::error(
                Some("open_streams"),
                cmd_id.as_deref(),
                format!("{text} ({failed} of {count} streams)"),
            ));
        }
    });
}

/// Reads (and discards) until the remote closes or resets the stream; only then is it dropped.
/// Nothing is written and the local side never closes first.
async fn hold(mut stream: Stream) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("held stream ended: {e}");
                break;
            }
        }
    }
}
