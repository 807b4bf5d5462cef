//! Event functions: what queue, topic and cron triggers run.
//!
//! Implement [`Handler`] and export it; the host hands over a batch (one event unless the
//! trigger sets a batch size). Returning an error retries the batch (or only the events named
//! in [`HandlerError::failed`]) with backoff, then dead-letters it.
//!
//! ```ignore
//! use updraft_sdk::event::{Event, EventExt, Handler, HandlerError};
//!
//! struct Projector;
//!
//! impl Handler for Projector {
//!     fn handle(events: Vec<Event>) -> Result<(), HandlerError> {
//!         for e in &events {
//!             let contact: serde_json::Value = e.json()?;
//!             println!("{} {}", e.type_, contact);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! updraft_sdk::export_event_handler!(Projector);
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::updraft::platform::types::{Event, HandlerError};

/// What an event function implements.
pub trait Handler {
    /// Handles a batch of events. An error means retry.
    fn handle(events: Vec<Event>) -> Result<(), HandlerError>;
}

/// Readers for an event's data and extension attributes.
pub trait EventExt {
    /// The data decoded from JSON.
    fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError>;
    /// The data as UTF-8 text (invalid bytes replaced).
    fn text(&self) -> String;
    /// The extension attribute `name`.
    fn extension(&self, name: &str) -> Option<&str>;
    /// Which delivery this is, starting at 1.
    fn attempt(&self) -> u32;
    /// Whether a cron trigger runs this occurrence late (caught up after downtime).
    fn past_due(&self) -> bool;
}

impl EventExt for Event {
    fn json<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_slice(&self.data).map_err(|e| {
            // Bad data does not get better with retries, but the host decides; say why.
            fail(format!(
                "event `{}` data is not the JSON expected: {e}",
                self.id
            ))
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn attempt(&self) -> u32 {
        self.extension("attempt")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
    }

    fn past_due(&self) -> bool {
        self.extension("pastdue") == Some("true")
    }
}

/// A failure of the whole batch.
pub fn fail(message: impl Into<String>) -> HandlerError {
    HandlerError {
        message: message.into(),
        failed: None,
    }
}

/// A failure of some events of the batch (by index); the others count as handled.
pub fn fail_some(message: impl Into<String>, failed: Vec<u32>) -> HandlerError {
    HandlerError {
        message: message.into(),
        failed: Some(failed),
    }
}

impl From<crate::Error> for HandlerError {
    fn from(e: crate::Error) -> Self {
        fail(e.0)
    }
}

/// Starts an event of type `ty` to publish or enqueue. The host fills an empty id (a
/// UUIDv7) and source (`/functions/<id>`).
pub fn new(ty: &str) -> Builder {
    Builder(Event {
        id: String::new(),
        source: String::new(),
        type_: ty.to_owned(),
        subject: None,
        time: None,
        datacontenttype: None,
        data: Vec::new(),
        extensions: Vec::new(),
    })
}

/// Builds an [`Event`].
pub struct Builder(Event);

impl Builder {
    /// Sets the id (events with the same source and id are deduplicated).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.0.id = id.into();
        self
    }

    /// Sets the source.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.0.source = source.into();
        self
    }

    /// Sets the subject (subscriptions can filter on its prefix).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.0.subject = Some(subject.into());
        self
    }

    /// Adds an extension attribute.
    pub fn extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.0.extensions.push((name.into(), value.into()));
        self
    }

    /// Sets raw data with its media type.
    pub fn data(mut self, content_type: &str, data: impl Into<Vec<u8>>) -> Event {
        self.0.datacontenttype = Some(content_type.to_owned());
        self.0.data = data.into();
        self.0
    }

    /// Sets JSON data.
    pub fn json<T: Serialize>(self, value: &T) -> crate::Result<Event> {
        let data = serde_json::to_vec(value)
            .map_err(|e| crate::Error(format!("cannot encode event data as JSON: {e}")))?;
        Ok(self.data("application/json", data))
    }

    /// The event without data.
    pub fn build(self) -> Event {
        self.0
    }
}

/// Exports a [`Handler`] as the component's `updraft:platform/event-handler`.
///
/// It also defines the empty `main` a binary crate needs (the host never calls it). The
/// function's crate must depend on the SDK under its own name, `updraft_sdk`. The
/// export's WIT is inlined here (it must match `wit/updraft.wit`) so the binding is
/// generated in the function's own crate: an HTTP function that uses the SDK exports nothing
/// extra.
#[macro_export]
macro_rules! export_event_handler {
    ($handler:ty) => {
        #[doc(hidden)]
        type __UpdraftEventHandler = $handler;

        /// An event function built as a binary needs a `main`; the host never calls it.
        #[allow(dead_code)]
        fn main() {}

        #[doc(hidden)]
        mod __updraft_event_export {
            $crate::__private::wit_bindgen::generate!({
                inline: r#"
                    package updraft:platform@0.1.0;
                    interface types {
                      record event {
                        id: string,
                        source: string,
                        %type: string,
                        subject: option<string>,
                        time: option<string>,
                        datacontenttype: option<string>,
                        data: list<u8>,
                        extensions: list<tuple<string, string>>,
                      }
                      record handler-error {
                        message: string,
                        failed: option<list<u32>>,
                      }
                    }
                    interface event-handler {
                      use types.{event, handler-error};
                      handle: func(events: list<event>) -> result<_, handler-error>;
                    }
                    world event-handler-export {
                      export event-handler;
                    }
                "#,
                world: "updraft:platform/event-handler-export",
                with: {
                    "updraft:platform/types@0.1.0": ::updraft_sdk::bindings::updraft::platform::types,
                },
                runtime_path: "::updraft_sdk::__private::wit_bindgen::rt",
            });

            struct Export;

            impl exports::updraft::platform::event_handler::Guest for Export {
                fn handle(
                    events: ::std::vec::Vec<$crate::event::Event>,
                ) -> ::std::result::Result<(), $crate::event::HandlerError> {
                    <super::__UpdraftEventHandler as $crate::event::Handler>::handle(events)
                }
            }

            export!(Export);
        }
    };
}
