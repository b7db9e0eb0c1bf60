//! A decoding session over a byte stream: framing (`StreamDecoder`), the configurations
//! seen so far (so data frames decode), and CFG-3 reassembly.

use super::fragments::Cfg3Assembler;
use super::store::ConfigStore;
use super::stream::{StreamDecoder, StreamItem};
use super::{decode_checked, Frame};
use crate::error::FrameError;

/// One result of `FrameStream::feed`.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A decoded frame at stream offset `offset`. After the last CFG-3 fragment, the
    /// reassembled configuration follows as its own `Frame::Config` event.
    Frame { offset: u64, frame: Frame },
    /// A frame that could not be framed or decoded; its `offset` is a stream offset.
    Error(FrameError),
}

/// See the module docs.
#[derive(Default)]
pub struct FrameStream {
    raw: StreamDecoder,
    configs: ConfigStore,
    cfg3: Cfg3Assembler,
}

impl FrameStream {
    pub fn new() -> Self {
        Self::default()
    }
    /// A session that already knows some configurations.
    pub fn with_configs(configs: ConfigStore) -> Self {
        Self {
            configs,
            ..Self::default()
        }
    }
    pub fn configs(&self) -> &ConfigStore {
        &self.configs
    }
    pub fn configs_mut(&mut self) -> &mut ConfigStore {
        &mut self.configs
    }

    /// Push `data`, calling `f` for every frame or error it completes. Configuration
    /// frames are remembered (by IDCODE) before they are passed on.
    pub fn feed(&mut self, data: &[u8], mut f: impl FnMut(StreamEvent)) {
        let Self { raw, configs, cfg3 } = self;
        raw.feed(data, |item| handle(configs, cfg3, item, &mut f));
    }

    /// Feed and collect the events (convenience for tests and batch use).
    pub fn feed_collect(&mut self, data: &[u8]) -> Vec<StreamEvent> {
        let mut v = Vec::new();
        self.feed(data, |e| v.push(e));
        v
    }

    /// End of stream: the frames and errors still in the buffer (see
    /// `StreamDecoder::finish`: the bytes behind a frame that never completed are
    /// rescanned, so a false start near the end loses nothing after it).
    pub fn finish(&mut self, mut f: impl FnMut(StreamEvent)) {
        let Self { raw, configs, cfg3 } = self;
        raw.finish(|item| handle(configs, cfg3, item, &mut f));
    }

    /// `finish` collecting the events.
    pub fn finish_collect(&mut self) -> Vec<StreamEvent> {
        let mut v = Vec::new();
        self.finish(|e| v.push(e));
        v
    }

    /// Stream offset of the next byte not yet consumed.
    pub fn offset(&self) -> u64 {
        self.raw.offset()
    }
}

/// One framed item to events: decoded against the configurations seen, configurations
/// remembered, CFG-3 fragments joined.
fn handle(
    configs: &mut ConfigStore,
    cfg3: &mut Cfg3Assembler,
    item: StreamItem<'_>,
    f: &mut impl FnMut(StreamEvent),
) {
    match item {
        StreamItem::Error(e) => f(StreamEvent::Error(e)),
        StreamItem::Frame { offset, bytes } => {
            let res = super::check_frame(bytes).and_then(|h| decode_checked(bytes, &h, configs));
            match res {
                Err(e) => f(StreamEvent::Error(e.shifted(offset as usize))),
                Ok(Frame::Config(c)) => {
                    configs.insert(c.clone());
                    f(StreamEvent::Frame {
                        offset,
                        frame: Frame::Config(c),
                    });
                }
                Ok(Frame::Cfg3Fragment(frag)) => {
                    let joined = cfg3.push(frag.clone());
                    f(StreamEvent::Frame {
                        offset,
                        frame: Frame::Cfg3Fragment(frag),
                    });
                    match joined {
                        Ok(Some(c)) => {
                            configs.insert(c.clone());
                            f(StreamEvent::Frame {
                                offset,
                                frame: Frame::Config(c),
                            });
                        }
                        Ok(None) => {}
                        Err(e) => f(StreamEvent::Error(e.shifted(offset as usize))),
                    }
                }
                Ok(frame) => f(StreamEvent::Frame { offset, frame }),
            }
        }
    }
}
