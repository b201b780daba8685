//! What crosses from the worker threads to JavaScript: received messages
//! and the outcome of each operation, as one `Event` object.

use crate::error::Failure;
use crate::region::Region;
use busbar::{BytesMessage, Message, ReplyHandle, SelectorMode};
use napi::bindgen_prelude::BufferSlice;
use napi::Env;
use napi_derive::napi;
use std::os::fd::{IntoRawFd, OwnedFd};

/// A received message, built in a worker thread, not yet JavaScript:
/// dropping it closes its descriptors and lets its regions go.
#[derive(Debug)]
pub struct Received {
    data: busbar::Bytes,
    format: u16,
    fds: Vec<OwnedFd>,
    regions: Vec<busbar::MemoryRegion>,
    source: String,
    selector: String,
    multicast: bool,
    reply: Option<ReplyHandle>,
}

/// The text of the last selector seen: a stream of messages to one
/// expression prints it once.
#[derive(Debug, Default)]
pub struct SelectorText(Option<(busbar::LabelOp, String)>);

impl SelectorText {
    fn of(&mut self, op: busbar::LabelOp) -> String {
        match &self.0 {
            Some((last, text)) if *last == op => text.clone(),
            _ => {
                let text = op.to_string();
                self.0 = Some((op, text.clone()));
                text
            }
        }
    }
}

impl Received {
    /// Takes a message apart.
    pub fn new(m: Message<BytesMessage>, texts: &mut SelectorText) -> Received {
        let reply = m.reply_handle();
        Received {
            selector: texts.of(m.selector.label_op),
            multicast: m.selector.mode == SelectorMode::Multicast,
            source: m.source.to_string(),
            format: m.payload.format,
            data: m.payload.data,
            fds: m.objects.into_iter().map(OwnedFd::from).collect(),
            regions: m.memory_regions,
            reply,
        }
    }

    /// The JavaScript object: the descriptors now belong to it (index.js
    /// wraps each in an `Fd`, which closes it when told, never on its own).
    ///
    /// The payload is copied into a `Buffer` V8 allocates, and the Rust
    /// copy freed at once: an external buffer over the Rust allocation
    /// would be freed only by a finalizer some turns after a collection,
    /// and at a hundred thousand messages a second that left the RSS
    /// growing by megabytes (test/soak.test.js); it also works the same
    /// under Electron, which refuses external buffers.
    pub fn into_js(self, env: &Env) -> Result<JsMessage, Failure> {
        let data = BufferSlice::copy_from(env, &self.data)?;
        drop(self.data);
        Ok(JsMessage {
            data,
            format: u32::from(self.format),
            fds: self.fds.into_iter().map(IntoRawFd::into_raw_fd).collect(),
            regions: self.regions.into_iter().map(Region::wrap).collect(),
            source: self.source,
            selector: self.selector,
            multicast: self.multicast,
            request: self.reply.map(|handle| ReplyToken { handle }),
        })
    }
}

/// A received message as index.js gets it.
#[napi(object, object_from_js = false)]
pub struct JsMessage {
    /// The payload (a copy in V8's memory).
    pub data: BufferSlice<'static>,
    /// The `BytesMessage` format tag.
    pub format: u32,
    /// Descriptors, owned by JavaScript from now on.
    pub fds: Vec<i32>,
    /// Memory regions.
    pub regions: Vec<Region>,
    /// The sending endpoint's id (16 hex digits).
    pub source: String,
    /// The label expression it was sent to.
    pub selector: String,
    /// Whether it was multicast.
    pub multicast: bool,
    /// Set when it is a request: what `reply` needs.
    pub request: Option<ReplyToken>,
}

/// What answering a request needs (opaque to JavaScript).
#[napi]
pub struct ReplyToken {
    pub(crate) handle: ReplyHandle,
}

/// The outcome of one operation, handed to the endpoint's event function.
#[napi(object, object_from_js = false)]
pub struct Event {
    /// `recv`, `send` or `request`.
    pub kind: String,
    /// The operation's id (chosen by index.js).
    pub id: u32,
    /// The error's code, when it failed.
    pub code: Option<String>,
    /// The error's message, when it failed.
    pub message: Option<String>,
    /// What arrived (`recv`: a batch; `request`: the answer).
    pub messages: Option<Vec<JsMessage>>,
}

impl Event {
    /// The event of operation `id` that failed with `f`.
    pub fn failed(kind: &str, id: u32, f: Failure) -> Event {
        Event {
            kind: kind.to_string(),
            id,
            code: Some(f.code.to_string()),
            message: Some(f.message),
            messages: None,
        }
    }
}

/// An event still in Rust, sent from a worker thread.
#[derive(Debug)]
pub struct Outcome {
    /// See [`Event::kind`].
    pub kind: &'static str,
    /// See [`Event::id`].
    pub id: u32,
    /// Messages, or why not.
    pub result: Result<Vec<Received>, Failure>,
}

impl Outcome {
    /// The JavaScript event.
    pub fn into_js(self, env: &Env) -> Result<Event, Failure> {
        let (code, message, messages) = match self.result {
            Ok(list) => (
                None,
                None,
                Some(
                    list.into_iter()
                        .map(|m| m.into_js(env))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            ),
            Err(f) => (Some(f.code.to_string()), Some(f.message), None),
        };
        Ok(Event {
            kind: self.kind.to_string(),
            id: self.id,
            code,
            message,
            messages,
        })
    }
}
