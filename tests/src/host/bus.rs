//! A Service Bus queue with the semantics the Functions trigger relies on, from Microsoft's
//! Service Bus documentation:
//!
//! - Peek-lock (https://learn.microsoft.com/azure/service-bus-messaging/message-transfers-locks-settlement#peeklock):
//!   a received message is locked, invisible to other receivers, until it is completed
//!   (removed) or abandoned (visible again).
//! - Delivery count and dead-lettering
//!   (https://learn.microsoft.com/azure/service-bus-messaging/service-bus-dead-letter-queues#maximum-delivery-count):
//!   each delivery under a lock counts (the first delivery has `DeliveryCount` 1); when a
//!   message is abandoned and its count has reached the queue's `MaxDeliveryCount` (default 10),
//!   it moves to the dead-letter queue with reason `MaxDeliveryCountExceeded`.
//! - The Functions trigger completes the message when the function succeeds and abandons it
//!   when it fails (`autoCompleteMessages: true`, host.json reference,
//!   https://learn.microsoft.com/azure/azure-functions/functions-bindings-service-bus#hostjson-settings).
//!
//! Not modelled: lock expiry and renewal (the host renews locks for
//! `maxAutoLockRenewalDuration`, longer than any invocation here), sessions, scheduled messages.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::Notify;

/// One message.
#[derive(Debug, Clone)]
pub struct Message {
    /// `MessageId`: set by the sender, else a new GUID-like id.
    pub id: String,
    /// The body, as sent.
    pub body: Vec<u8>,
    /// Deliveries so far.
    pub delivery_count: u32,
    /// `SequenceNumber`: assigned by the queue, increasing.
    pub sequence: i64,
    /// `EnqueuedTimeUtc`.
    pub enqueued: String,
}

/// A dead-lettered message with the broker's reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message as it was last delivered.
    pub message: Message,
    /// `DeadLetterReason`, e.g. `MaxDeliveryCountExceeded`.
    pub reason: String,
}

#[derive(Default)]
struct State {
    ready: VecDeque<Message>,
    locked: HashMap<u128, Message>,
    dead: Vec<DeadLetter>,
    next_sequence: i64,
    completed: u64,
}

/// The queue.
pub struct Queue {
    /// Its name (function.json `queueName`, resolved).
    pub name: String,
    /// `MaxDeliveryCount` of the queue.
    pub max_delivery_count: u32,
    state: Mutex<State>,
    /// Wakes receivers when a message becomes visible.
    arrived: Notify,
}

impl Queue {
    /// An empty queue.
    pub fn new(name: &str, max_delivery_count: u32) -> Queue {
        Queue {
            name: name.to_string(),
            max_delivery_count,
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
        }
    }

    /// Sends a message (a producer, or an output binding); returns its `MessageId`.
    pub fn send(&self, id: Option<String>, body: Vec<u8>) -> String {
        let mut s = self.state.lock().unwrap();
        s.next_sequence += 1;
        let sequence = s.next_sequence;
        let id = id.unwrap_or_else(|| format!("{:032x}", super::wire::rand_u128()));
        s.ready.push_back(Message {
            id: id.clone(),
            body,
            delivery_count: 0,
            sequence,
            enqueued: super::wire::iso_now(),
        });
        drop(s);
        self.arrived.notify_one();
        id
    }

    /// Receives the next message under a lock (waits for one): its lock token and the message
    /// with its delivery counted.
    pub async fn receive(&self) -> (u128, Message) {
        loop {
            let notified = self.arrived.notified();
            {
                let mut s = self.state.lock().unwrap();
                if let Some(mut m) = s.ready.pop_front() {
                    m.delivery_count += 1;
                    let token = super::wire::rand_u128();
                    s.locked.insert(token, m.clone());
                    return (token, m);
                }
            }
            notified.await;
        }
    }

    /// Completes a locked message: it is gone.
    pub fn complete(&self, token: u128) {
        let mut s = self.state.lock().unwrap();
        if s.locked.remove(&token).is_some() {
            s.completed += 1;
        }
    }

    /// Abandons a locked message: visible again, or dead-lettered when its deliveries reached
    /// `MaxDeliveryCount`.
    pub fn abandon(&self, token: u128) {
        let mut s = self.state.lock().unwrap();
        let Some(m) = s.locked.remove(&token) else {
            return;
        };
        if m.delivery_count >= self.max_delivery_count {
            s.dead.push(DeadLetter {
                message: m,
                reason: "MaxDeliveryCountExceeded".into(),
            });
            return;
        }
        s.ready.push_back(m);
        drop(s);
        self.arrived.notify_one();
    }

    /// The dead-letter queue's messages.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.state.lock().unwrap().dead.clone()
    }

    /// Messages waiting or locked.
    pub fn in_flight(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.ready.len() + s.locked.len()
    }

    /// Messages completed so far.
    pub fn completed(&self) -> u64 {
        self.state.lock().unwrap().completed
    }
}
