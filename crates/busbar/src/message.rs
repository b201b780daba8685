//! A message: a selector, a payload, and attachments.

use crate::{MemoryRegion, Object, Selector};

/// A message: where it goes, what it says, and what it carries along.
///
/// ```
/// use busbar::{Message, Selector};
/// let m = Message::new(Selector::unicast("moon"), String::from("hello"));
/// assert!(m.objects.is_empty() && m.memory_regions.is_empty());
/// ```
#[derive(Debug)]
pub struct Message<T> {
    /// Where it goes. On a received message, the selector the sender used (without its ttl).
    pub selector: Selector,
    /// What it says.
    pub payload: T,
    /// File descriptors that travel with it (objects plus regions: at most 253 in all).
    pub objects: Vec<Object>,
    /// Shared memory that travels with it.
    pub memory_regions: Vec<MemoryRegion>,
}

impl<T> Message<T> {
    /// A message with no attachments.
    pub fn new(selector: Selector, payload: T) -> Message<T> {
        Message {
            selector,
            payload,
            objects: Vec::new(),
            memory_regions: Vec::new(),
        }
    }

    /// Adds an object (builder style).
    pub fn with_object(mut self, object: Object) -> Message<T> {
        self.objects.push(object);
        self
    }

    /// Adds a memory region (builder style).
    pub fn with_memory_region(mut self, region: MemoryRegion) -> Message<T> {
        self.memory_regions.push(region);
        self
    }
}
